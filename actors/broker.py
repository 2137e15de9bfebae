"""The broker and its middleware stack, the same for workers, senders and tests."""

from __future__ import annotations

from collections.abc import Iterable

import dramatiq
from dramatiq import Actor, Broker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    Middleware,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

from jobs.config import Settings
from middleware import ArgumentValidation, ProgressMiddleware, StatusMiddleware, StructuredLogging


def middleware_stack(settings: Settings) -> list[Middleware]:
    # Order matters: the status middleware comes after Retries (see middleware/retry_policy.py)
    # and after the argument check, so that a refused send writes nothing.
    return [
        StructuredLogging(fmt=settings.log_format, level=settings.log_level),
        AgeLimit(),
        TimeLimit(),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        Retries(
            max_retries=settings.max_retries,
            min_backoff=settings.min_backoff_ms,
            max_backoff=settings.max_backoff_ms,
        ),
        CurrentMessage(),
        ArgumentValidation(),
        StatusMiddleware(send_deadline_s=settings.send_deadline_s, start_deadline_s=settings.write_deadline_s),
        ProgressMiddleware(capacity=settings.progress_queue),
    ]


def build_broker(settings: Settings, *, stub: bool = False) -> Broker:
    if stub:
        return StubBroker(middleware=middleware_stack(settings))
    return RedisBroker(url=settings.redis_url, namespace=settings.namespace, middleware=middleware_stack(settings))


def bind(broker: Broker, actors: Iterable[Actor]) -> None:
    """Makes `broker` the one that `actors` send to and are run from (tests switch brokers)."""
    dramatiq.set_broker(broker)
    for actor in actors:
        actor.broker = broker
        broker.declare_actor(actor)
