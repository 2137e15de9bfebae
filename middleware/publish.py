"""Publishing a batch of messages: on Redis, in one round trip instead of one per message."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from uuid import uuid4

import redis
import structlog
from dramatiq import Broker, Message
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis, dq_name
from dramatiq.errors import BrokerError

from .errors import JobNotPublished, one_line

log = structlog.get_logger(__name__)

#: What a broker raises when it can't take a message (an ordinary exception: our hooks raise
#: MiddlewareErrors, so one of these comes from the publish itself, after the rows were written).
BROKER_ERRORS = (redis.RedisError, BrokerError, OSError)

# What RedisBroker.enqueue uses, that a pipelined publish needs too (dramatiq 2.x internals).
_REDIS_INTERNALS = ("scripts", "broker_id", "namespace", "heartbeat_timeout", "dead_message_ttl")


def publish_many(broker: Broker, messages: list[Message], delay: int | None) -> None:
    """Enqueues every message exactly as `broker.enqueue` would, hooks included.

    On a RedisBroker the enqueue script of each message goes down one pipeline: the batch costs
    one round trip. Any other broker (or a RedisBroker whose internals have changed) gets one
    `enqueue` per message.
    """
    if not _pipelinable(broker):
        for message in messages:
            broker.enqueue(message, delay=delay)
        return
    assert isinstance(broker, RedisBroker)
    prepared = [_prepared(broker, message, delay) for message in messages]
    for message in prepared:
        broker.emit_before("enqueue", message, delay)
    dispatch = broker.scripts["dispatch"]
    pipeline = broker.client.pipeline(transaction=False)
    for message in prepared:
        # The argument list of RedisBroker._dispatch("enqueue").
        args = [
            "enqueue",
            current_millis(),
            message.queue_name,
            broker.broker_id,
            broker.heartbeat_timeout,
            broker.dead_message_ttl,
            broker._should_do_maintenance("enqueue"),
            broker._max_unpack_size(),
            message.options["redis_message_id"],
            message.encode(),
        ]
        dispatch(keys=[broker.namespace], args=args, client=pipeline)
    pipeline.execute()
    for message in prepared:
        broker.emit_after("enqueue", message, delay)


@contextmanager
def recorded_before(job_ids: list[str]) -> Iterator[None]:
    """Around the publish of jobs whose rows are committed (by the send hook, or a batch's
    record): a broker that can't take them raises JobNotPublished, which says they are recorded
    and will be sent when the broker is back, and carries their ids."""
    try:
        yield
    except BROKER_ERRORS as error:
        # A warning: the caller gets the error and decides; the jobs themselves are safe.
        log.warning(
            "publish_failed",
            job_id=job_ids[0],
            count=len(job_ids),
            error=one_line(error),
            outcome="recorded, will be published by reconcile",
        )
        raise JobNotPublished(job_ids, error) from error


def _pipelinable(broker: Broker) -> bool:
    return (
        isinstance(broker, RedisBroker)
        and all(hasattr(broker, name) for name in _REDIS_INTERNALS)
        and "dispatch" in broker.scripts
        and callable(getattr(broker, "_should_do_maintenance", None))
        and callable(getattr(broker, "_max_unpack_size", None))
    )


def _prepared(broker: RedisBroker, message: Message, delay: int | None) -> Message:
    # As RedisBroker.enqueue: a Redis id of its own per enqueue, and the delay queue with an eta.
    message = message.copy(options={"redis_message_id": str(uuid4())})
    if delay is not None:
        message = message.copy(queue_name=dq_name(message.queue_name), options={"eta": current_millis() + delay})
    return message
