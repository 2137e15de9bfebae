"""Takes back what a lost worker held: its running jobs, and every message it had taken."""

from __future__ import annotations

import time
from datetime import datetime

import redis
import structlog
from dramatiq import Broker
from dramatiq.brokers.redis import RedisBroker

from db import transitions
from db.measures import Counter

from . import resend, unacked, unsendable

log = structlog.get_logger(__name__)

#: Messages this process put back in their queues from lost consumers (its report).
REQUEUED = Counter()

# How long a consumer never seen holding a lease is remembered (senders come and go).
_FORGET_S = 3600.0


def recover_lost_jobs(
    broker: Broker, *, window_s: float, unleased: dict[str, float] | None = None
) -> list[transitions.Reaped]:
    """One pass of the reaper; returns the jobs taken back.

    1. In PostgreSQL, every `active` job whose worker's lease has run out goes back to
       `retrying`, or ends `failed` once it has lost as many deliveries as the database allows
       (job_reap: the database's clock and limits judge, and a worker stops its own jobs before
       its lease runs out). An active job whose worker has no row at all is taken once it has
       not been updated for the database's longest lease.
    2. On Redis, every message that a consumer without a live lease had taken and not
       acknowledged, running or only prefetched, goes back to its queue (unacked.py): a
       consumer whose worker's lease ran out at once; one whose worker never recorded a lease
       (cut off from PostgreSQL since it booted) once this caller has seen it so for `window_s`,
       which `unleased` (kept by the caller from pass to pass) remembers.
    3. Each job taken back whose message was not among those is published again, with the
       options it was sent with; one that can't be (Redis unreachable) is left to reconcile,
       and the pass raises Redis' error once the rows are taken back. One whose stored arguments
       can't be read (nested too deep, stored before the database's ceilings) is failed instead.

    """
    # The consumers first, then the rows: a lease that had run out when the consumers were
    # judged has run out when the rows are, so no message goes back to its queue while its
    # job's row still says the lost worker holds it (that delivery would be refused, and the
    # job would wait for the next pass to be published again).
    # Redis unreachable: the rows are taken back all the same (their status is true at once),
    # their messages wait for a pass that reaches Redis, and this pass ends with the error.
    unreachable: redis.RedisError | None = None
    lost: list[str] = []
    judged_at = None
    if isinstance(broker, RedisBroker):
        try:
            lost, judged_at = _lost_consumers(unacked.consumers(broker), window_s, unleased)
        except redis.RedisError as error:
            unreachable = error
    # Only leases that had run out when the consumers were judged: a lease that runs out in
    # between waits for the next pass, where its consumer and its rows are taken back together.
    reaped = transitions.reap(expired_by=judged_at)
    moved: set[str] = set()
    if lost:
        assert isinstance(broker, RedisBroker)
        ids = unacked.requeue(broker, lost)
        moved.update(ids)
        REQUEUED.add(len(ids))
        if ids:
            log.warning("messages_requeued", consumers=lost, count=len(ids), job_ids=ids)
    for n, job in enumerate(reaped):
        bound = log.bind(
            job_id=job.job_id, job_type=job.job_type, write="awaited", transition=f"active -> {job.outcome}"
        )
        if job.outcome != "retrying":
            bound.error("job_failed_worker_lost")
            continue
        if job.unreadable:
            reaped[n] = unsendable.fail(job)
            continue
        republished = job.job_id not in moved
        if republished:
            try:
                resend.publish(broker, job)
            except Exception as error:  # noqa: BLE001 - reconcile publishes it later; the others go on
                bound.warning("job_not_republished", error=f"{type(error).__name__}: {error}")
                continue
        bound.warning("job_recovered", republished=republished)
    if unreachable is not None:
        raise unreachable
    return reaped


def _lost_consumers(
    candidates: list[str], window_s: float, unleased: dict[str, float] | None
) -> tuple[list[str], datetime]:
    leases, judged_at = transitions.consumer_leases(candidates)
    now = time.monotonic()
    lost = []
    for broker_id in candidates:
        if leases.get(broker_id):
            if unleased is not None:
                unleased.pop(broker_id, None)
        elif broker_id in leases:
            lost.append(broker_id)  # its worker's lease ran out, or was given up on shutdown
        elif unleased is not None and now - unleased.setdefault(broker_id, now) >= window_s:
            lost.append(broker_id)  # a worker that never recorded a lease, or a sender (holds nothing)
    if unleased is not None:
        for broker_id, since in list(unleased.items()):
            if now - since > _FORGET_S:
                del unleased[broker_id]
    return lost, judged_at
