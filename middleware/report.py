"""What a worker process says of itself, for /metrics: sent to the database by its maintenance
thread (middleware/maintenance.py), since a process of `dramatiq -p N` has no port of its own that
Prometheus could find. The server shows the reports of live workers (jobs/metrics.py)."""

from __future__ import annotations

from typing import Any

from dramatiq import Broker

from db import metrics

from . import reaper, reconcile
from .awaited import WRITE_SECONDS
from .heartbeat import LeaseKeeper
from .identity import process_id
from .progress import ProgressMiddleware
from .status import StatusMiddleware


def process_report(broker: Broker) -> dict[str, Any]:
    """This process's numbers: its progress writer's queue and dropped reports, its group commit's
    batch sizes, how long its status hooks waited for their writes, its re-sends."""
    report: dict[str, Any] = {
        "status_write_seconds": {kind: histogram.snapshot() for kind, histogram in WRITE_SECONDS.items()},
        "reconcile_resends": reconcile.RESENT.value,
        "requeued_messages": reaper.REQUEUED.value,
    }
    for middleware in broker.middleware:
        if isinstance(middleware, ProgressMiddleware):
            report["progress_queue"] = middleware.writer.waiting
            report["progress_dropped"] = middleware.writer.dropped.value
        elif isinstance(middleware, StatusMiddleware) and middleware.commits is not None:
            report["group_commit_batch_size"] = middleware.commits.batch_sizes.snapshot()
    return report


def send_report(broker: Broker) -> bool:
    """Records this process's report (its worker token proves it is this process), once its
    heartbeat has recorded the process (a lease); whether it was sent."""
    keeper = next((m for m in broker.middleware if isinstance(m, LeaseKeeper)), None)
    if keeper is None or not keeper.lease.live():
        return False
    metrics.record_report(process_id(), process_report(broker))
    return True
