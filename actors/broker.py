"""The broker and its middleware stack, the same for workers, senders and tests."""

from __future__ import annotations

from collections.abc import Iterable

import dramatiq
import redis
from dramatiq import Actor, Broker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    Middleware,
    Pipelines,
    ShutdownNotifications,
    TimeLimit,
)
from dramatiq_abort import EventBackend
from dramatiq_abort.backends import RedisBackend, StubBackend

from middleware import (
    ArgumentValidation,
    Lease,
    LeaseKeeper,
    Maintenance,
    ProgressMiddleware,
    SendRecorder,
    StatusMiddleware,
    StructuredLogging,
)
from middleware.cancellation import RunningAbortable
from middleware.faults import FaultInjection
from middleware.retry_policy import JobRetries
from middleware.settings import Settings


def middleware_stack(settings: Settings, abort_backend: EventBackend) -> list[Middleware]:
    # Order matters. The status middleware comes after Retries (see middleware/retry_policy.py),
    # and the send recorder after the argument check, so that a refused send writes nothing.
    # Everything that interrupts a running job (TimeLimit, ShutdownNotifications, Abortable,
    # the lease's watchdog) comes after the status middleware: a thread is interruptible only
    # once its start is recorded, and no longer once its end is being written (after-hooks run
    # in reverse), so no interruption lands inside a status write. The lease keeper comes last.
    faults = [FaultInjection()] if settings.allow_fault_injection else []
    lease = Lease(window_s=settings.recovery_window_s, margin_s=settings.lease_margin_s)
    return [
        StructuredLogging(settings),
        AgeLimit(),
        Callbacks(),
        Pipelines(),
        JobRetries(
            max_retries=settings.max_retries,
            min_backoff=settings.min_backoff_ms,
            max_backoff=settings.max_backoff_ms,
        ),
        CurrentMessage(),
        ArgumentValidation(),
        *faults,
        SendRecorder(send_deadline_s=settings.send_deadline_s),
        StatusMiddleware(lease=lease),
        TimeLimit(),
        ShutdownNotifications(),
        RunningAbortable(backend=abort_backend),
        ProgressMiddleware(capacity=settings.progress_queue, interval_s=settings.progress_interval_ms / 1000),
        Maintenance(
            reap_s=settings.heartbeat_s,
            window_s=settings.recovery_window_s,
            reconcile_s=settings.reconcile_s,
            prune_s=settings.prune_s,
            prune_batch=settings.prune_batch,
        ),
        LeaseKeeper(lease, heartbeat_s=settings.heartbeat_s, may_act_as_users=bool(settings.worker_may_act_as_users)),
    ]


def build_broker(settings: Settings, *, stub: bool = False) -> Broker:
    if stub:
        return StubBroker(middleware=middleware_stack(settings, StubBackend()))
    # Without decode_responses: with it, dramatiq-abort never aborts a running job.
    backend = RedisBackend(client=redis.Redis.from_url(settings.redis_url), namespace=f"{settings.namespace}-abort:")
    return RedisBroker(
        url=settings.redis_url,
        namespace=settings.namespace,
        middleware=middleware_stack(settings, backend),
        heartbeat_timeout=settings.broker_heartbeat_timeout_ms,
        maintenance_chance=settings.broker_maintenance_chance,
    )


def bind(broker: Broker, actors: Iterable[Actor]) -> None:
    """Makes `broker` the one that `actors` send to and are run from (tests switch brokers)."""
    dramatiq.set_broker(broker)
    for actor in actors:
        actor.broker = broker
        broker.declare_actor(actor)
