"""What the broker holds for each queue, beside the rows: `jobctl stats` and /metrics show both
(a gap says reconcile has work)."""

from __future__ import annotations

from dataclasses import dataclass

from middleware.settings import Settings

# A Redis that doesn't answer must not hold up the database's half of `stats` or of a scrape.
REDIS_TIMEOUT_S = 2.0


@dataclass
class Depth:
    """What Redis holds for one queue (dramatiq 2.x's key layout: see middleware/unacked.py)."""

    queued: int
    #: Messages sent with a delay, or retried with a backoff, not yet taken by a worker. The
    #: delay queue is a list, like the queue itself (dispatch.lua's "enqueue").
    delayed: int
    #: Taken by a worker and not acknowledged yet: running, or prefetched (delayed ones
    #: included, which a worker holds until they are due).
    unacked: int

    @property
    def total(self) -> int:
        return self.queued + self.delayed + self.unacked


def broker_depth(settings: Settings, queues: list[str]) -> dict[str, Depth]:
    """The depth of each queue in Redis, in two round trips; raises redis' errors."""
    import redis

    client = redis.Redis.from_url(
        settings.redis_url, socket_connect_timeout=REDIS_TIMEOUT_S, socket_timeout=REDIS_TIMEOUT_S
    )
    try:
        prefix = settings.namespace
        # Every consumer (and sender) that Redis has seen lately: whose acks sets may hold messages.
        consumers = [member.decode() for member in client.zrange(f"{prefix}:__heartbeats__", 0, -1)]
        pipeline = client.pipeline(transaction=False)
        for queue in queues:
            pipeline.llen(f"{prefix}:{queue}")
            pipeline.llen(f"{prefix}:{queue}.DQ")
            for consumer in consumers:
                pipeline.scard(f"{prefix}:__acks__.{consumer}.{queue}")
                pipeline.scard(f"{prefix}:__acks__.{consumer}.{queue}.DQ")
        counts = iter(pipeline.execute())
        return {
            queue: Depth(next(counts), next(counts), sum(next(counts) for _ in range(2 * len(consumers))))
            for queue in queues
        }
    finally:
        client.close()
