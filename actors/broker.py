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

from jobs.config import Settings
from middleware import ArgumentValidation, ProgressMiddleware, StatusMiddleware, StructuredLogging
from middleware.cancellation import CancellableRetries, RunningAbortable
from middleware.faults import FaultInjection
from middleware.recovery import Recovery


def middleware_stack(settings: Settings, abort_backend: EventBackend) -> list[Middleware]:
    # Order matters. The status middleware comes after Retries (see middleware/retry_policy.py)
    # and after the argument check, so that a refused send writes nothing. Abortable comes after
    # it: a thread is abortable only once its start is recorded, and no longer once its end is
    # being written (after-hooks run in reverse), so an abort never lands inside a status write.
    faults = [FaultInjection()] if settings.allow_fault_injection else []
    return [
        StructuredLogging(fmt=settings.log_format, level=settings.log_level),
        AgeLimit(),
        TimeLimit(),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        CancellableRetries(
            max_retries=settings.max_retries,
            min_backoff=settings.min_backoff_ms,
            max_backoff=settings.max_backoff_ms,
        ),
        CurrentMessage(),
        ArgumentValidation(),
        *faults,
        StatusMiddleware(send_deadline_s=settings.send_deadline_s, start_deadline_s=settings.write_deadline_s),
        RunningAbortable(backend=abort_backend),
        ProgressMiddleware(capacity=settings.progress_queue),
        Recovery(
            heartbeat_s=settings.heartbeat_s,
            window_s=settings.recovery_window_s,
            max_deliveries=settings.max_deliveries,
            reconcile_s=settings.reconcile_s,
        ),
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
