"""What /metrics and `jobctl metrics` read of the database (jobs/metrics.py turns it into
Prometheus' format), and what a worker process writes there of itself.

Every read is cheap however many jobs the table holds: the counters are rows of job_metrics,
which job_metrics_count() keeps up from the events; the waiting and running jobs are counted on
an index of those rows alone; the oldest waiting job of a queue is one index probe; the workers
are the recent rows of a small table (0020_operations.sql).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .connection import database

#: Workers silent for longer than this are left out (every boot of a process adds a row).
RECENT_S = 3600


@dataclass(frozen=True)
class Unfinished:
    queue: str
    status: str
    job_type: str
    jobs: int


@dataclass(frozen=True)
class Worker:
    worker_id: str
    hostname: str
    heartbeat_age_s: float
    #: Its lease runs (it may start jobs); a worker whose lease ran out without a stop is lost.
    live: bool


@dataclass(frozen=True)
class Reading:
    """One scrape's worth of the database, read at `now` (its clock)."""

    now: datetime
    unfinished: list[Unfinished]
    #: Seconds since the oldest due waiting job of each queue that has a waiting job became due.
    oldest_waiting_s: dict[str, float]
    workers: list[Worker]
    #: The counters and histograms of job_metrics: (name, job_type, label) -> value.
    counters: dict[tuple[str, str, str], float]
    #: The reports of live workers (middleware/report.py), as they sent them.
    reports: dict[str, dict[str, Any]]


#: Events a count takes in one statement (about 0.3 s of work here): a backlog, however long, is
#: counted page by page, never in a statement that a timeout would cancel every time.
PAGE = 20_000


def count_events(*, wait: bool = False, pages: int = 1) -> int | None:
    """Adds the events committed since the last count to the counters, `pages` pages at most
    (the next count goes on); how many it counted, or None when another count was running
    (`wait`: wait for it instead)."""
    counted = 0
    for _ in range(pages):
        page = database.execute_sql("SELECT job_metrics_count(%s, %s)", (wait, PAGE)).fetchone()[0]
        if page is None:
            return None
        counted += page
        if page < PAGE:
            break
    return counted


def read() -> Reading:
    """Everything /metrics shows of the database, after a count of the new events."""
    count_events()
    now = database.execute_sql("SELECT clock_timestamp()").fetchone()[0]
    # The partial index of unfinished jobs holds every column named: an index-only scan.
    unfinished = [
        Unfinished(*row)
        for row in database.execute_sql(
            "SELECT queue, status, job_type, count(*) FROM job_status"
            " WHERE status IN ('pending', 'retrying', 'active') GROUP BY queue, status, job_type"
        ).fetchall()
    ]
    queues = sorted({row.queue for row in unfinished if row.status != "active"})
    oldest = {}
    if queues:
        # Per queue and status, the first entry of the index is the earliest due time.
        rows = database.execute_sql(
            "SELECT q.queue, greatest(0, extract(epoch FROM clock_timestamp() - least("
            "  (SELECT min(COALESCE(j.scheduled_for, j.updated_at)) FROM job_status j"
            "    WHERE j.queue = q.queue AND j.status = 'pending'),"
            "  (SELECT min(COALESCE(j.scheduled_for, j.updated_at)) FROM job_status j"
            "    WHERE j.queue = q.queue AND j.status = 'retrying'))))"
            " FROM unnest(%s::text[]) AS q(queue)",
            (queues,),
        ).fetchall()
        oldest = {queue: float(age) for queue, age in rows}
    workers = [
        Worker(worker_id, hostname, float(age), live)
        for worker_id, hostname, age, live in database.execute_sql(
            "SELECT w.worker_id, w.hostname, extract(epoch FROM clock_timestamp() - w.heartbeat_at),"
            "       w.lease_expires_at > clock_timestamp()"
            "  FROM workers w"
            " WHERE w.stopped_at IS NULL AND w.heartbeat_at > clock_timestamp() - %s * interval '1 second'"
            " ORDER BY w.worker_id",
            (RECENT_S,),
        ).fetchall()
    ]
    counters = {
        (name, job_type, label): value
        for name, job_type, label, value in database.execute_sql(
            "SELECT name, job_type, label, value FROM job_metrics"
        ).fetchall()
    }
    live = [w.worker_id for w in workers if w.live]
    reports = {}
    if live:
        reports = dict(
            database.execute_sql(
                "SELECT worker_id, report FROM worker_reports WHERE worker_id = ANY(%s)", (live,)
            ).fetchall()
        )
    return Reading(now, unfinished, oldest, workers, counters, reports)


def record_report(worker_process: str, report: dict[str, Any]) -> None:
    """Records what the process `worker_process` says of itself (only that process may: the
    database checks its worker token)."""
    database.execute_sql("SELECT worker_report(%s, %s::jsonb)", (worker_process, json.dumps(report)))
