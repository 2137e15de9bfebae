"""Finds waiting jobs whose messages the broker no longer holds, and publishes them again."""

from __future__ import annotations

import structlog
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import dq_name

from db import transitions
from db.measures import Counter

from . import resend, unsendable

log = structlog.get_logger(__name__)

#: Jobs this process published again because Redis had lost them (its report: middleware/report.py).
RESENT = Counter()


class CannotReconcile(TypeError):
    def __init__(self, broker: object) -> None:
        super().__init__(f"reconciling needs a RedisBroker, not {type(broker).__name__}")


def broker_job_ids(broker: RedisBroker, queues: set[str]) -> set[str]:
    """The ids of every message Redis holds for `queues`: waiting, delayed or being processed
    (a message leaves its queue's `.msgs` hash only when it is acknowledged)."""
    ids = set()
    for queue in queues:
        for name in (queue, dq_name(queue)):
            for _, data in broker.client.hscan_iter(f"{broker.namespace}:{name}.msgs"):
                ids.add(Message.decode(data).message_id)
    return ids


def reconcile(broker: RedisBroker, *, grace_s: float) -> list[transitions.Reaped]:
    """Publishes again, with the same job id and the options it was sent with, every pending or
    retrying job (untouched for `grace_s`, so that a send in progress is left alone) whose
    message is not in Redis, due when the job is due (its delay, or its retry's backoff).
    Running and finished jobs are never sent again; a copy that turns out to be extra is
    skipped by the status guard when it is delivered. A job whose stored arguments can't be read
    (nested too deep, stored before the database's ceilings) is failed instead, once: sent again,
    it would be missing again at every pass. Returns the jobs it acted on, each with its
    outcome: its status (published again), or 'failed'."""
    if not isinstance(broker, RedisBroker):
        raise CannotReconcile(broker)
    # The rows first, then the broker: a job that finishes in between is sent again and skipped,
    # never missed.
    waiting = transitions.waiting_jobs(int(grace_s * 1000))
    if not waiting:
        return []
    present = broker_job_ids(broker, {job.queue for job in waiting})
    missing = [job for job in waiting if job.job_id not in present]
    for n, job in enumerate(missing):
        if job.unreadable:
            missing[n] = unsendable.fail(job)
            continue
        resend.publish(broker, job)
        RESENT.add()
        log.warning(
            "job_republished",
            job_id=job.job_id,
            job_type=job.job_type,
            status=job.outcome,
            due_in_ms=job.due_in_ms,
            write="awaited",
        )
    return missing
