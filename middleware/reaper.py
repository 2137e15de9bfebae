"""Takes back what a lost worker held: its running jobs, and every message it had taken."""

from __future__ import annotations

import structlog
from dramatiq import Broker
from dramatiq.brokers.redis import RedisBroker

from db import transitions

from . import resend, unacked

log = structlog.get_logger(__name__)


def recover_lost_jobs(broker: Broker, *, window_s: float, max_deliveries: int) -> list[transitions.Reaped]:
    """One pass of the reaper; returns the jobs taken back.

    1. In PostgreSQL, every `active` job whose worker's lease has run out goes back to
       `retrying`, or ends `failed` once it has lost `max_deliveries` deliveries (job_reap:
       the database's clock judges, and a worker stops its own jobs before its lease runs out).
    2. On Redis, every message those workers' consumers had taken and not acknowledged, running
       or only prefetched, goes back to its queue (unacked.py).
    3. Each job taken back whose message was not among those is published again, with the
       options it was sent with.

    `window_s` judges only the jobs of a worker that never recorded a heartbeat.
    """
    reaped = transitions.reap(int(window_s * 1000), max_deliveries)
    moved: set[str] = set()
    if isinstance(broker, RedisBroker):
        for broker_id in transitions.lost_brokers(unacked.consumers(broker)):
            ids = unacked.requeue(broker, broker_id)
            moved.update(ids)
            if ids:
                log.warning("messages_requeued", consumer=broker_id, count=len(ids), job_ids=ids)
    for job in reaped:
        bound = log.bind(
            job_id=job.job_id, job_type=job.job_type, write="awaited", transition=f"active -> {job.outcome}"
        )
        if job.outcome != "retrying":
            bound.error("job_failed_worker_lost")
            continue
        if job.job_id not in moved:
            resend.publish(broker, job)
        bound.warning("job_recovered", republished=job.job_id not in moved)
    return reaped
