"""The whole system's numbers in Prometheus' text format: what `GET /metrics` serves and `jobctl
metrics` prints.

Everything comes from the database (db.metrics: counters kept from the events, so every server
says the same and a restart loses nothing; the workers' own reports) and from Redis (the depth of
each queue), read at each scrape: nothing is kept in this process. No series has a label that
names a user or an organization: labels are job types, queues, statuses and outcomes, and worker
processes (those alive in the last hour), so the number of series stays bounded.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from db import metrics
from db.measures import BATCH_BOUNDS, WRITE_SECONDS_BOUNDS
from middleware.settings import Settings

from .broker_depth import Depth, broker_depth

log = structlog.get_logger(__name__)

#: The buckets of the wait and run histograms: job_metrics_count() in 0020_operations.sql puts an
#: observation under the same bounds (its array and this tuple must stay equal).
DURATION_BOUNDS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
WAITING = ("pending", "retrying")

#: The counters kept in job_metrics: (its name there, the series, its documentation, the name of
#: its second label, the values that label always shows, 0 until they happen).
COUNTERS = (
    ("sent", "jobs_sent", "Jobs sent (recorded pending).", None, ()),
    (
        "finished",
        "jobs_finished",
        "Jobs that ended, by outcome.",
        "outcome",
        ("completed", "failed", "cancelled"),
    ),
    (
        "retries",
        "jobs_retries",
        "Attempts that ended with the job waiting to run again, by cause: an error, its worker lost"
        " (the reaper), its worker's lease running out.",
        "cause",
        ("error", "worker_lost", "lease_expired"),
    ),
    (
        "worker_lost",
        "jobs_worker_lost",
        "Jobs the reaper took back from a lost worker: retrying, or failed (WorkerLost) at the delivery limit.",
        "outcome",
        ("retrying", "failed"),
    ),
    (
        "lease_expired",
        "jobs_lease_expired",
        "Attempts a worker stopped because its lease was running out: retrying, or failed at the delivery limit.",
        "outcome",
        ("retrying", "failed"),
    ),
    (
        "cancel_requests",
        "jobs_cancel_requests",
        "Cancel requests of users and operators, by outcome (a request for a job already cancelled changes"
        " nothing and is not counted).",
        "outcome",
        ("cancelled", "refused_finished", "refused_forbidden"),
    ),
    (
        "pruned",
        "jobs_pruned",
        "Finished jobs deleted by retention, by outcome.",
        "outcome",
        ("completed", "failed", "cancelled"),
    ),
)


def exposition(settings: Settings, job_types: dict[str, str]) -> bytes:
    """The text a scrape gets. `job_types`: each job type this release runs, with its queue (their
    series are shown at 0 before anything happens to them)."""
    reading = metrics.read()
    try:
        depths: dict[str, Depth] | None = broker_depth(settings, sorted(set(job_types.values())))
    except Exception as error:  # noqa: BLE001 - the database's numbers are still worth serving
        log.warning("broker_unreachable", what="metrics", error=f"{type(error).__name__}: {error}")
        depths = None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collected(list(_families(reading, depths, job_types))))
    return generate_latest(registry)


class _Collected:
    """The families of one scrape, as a prometheus_client collector."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def _families(reading: metrics.Reading, depths: dict[str, Depth] | None, job_types: dict[str, str]) -> Iterator[Metric]:
    yield from _jobs_now(reading, job_types)
    yield from _counters(reading, job_types)
    for kind, doc in (
        ("wait", "Seconds from when a job was due (sent, or its delay over) to its first start."),
        ("run", "Seconds from the start of an attempt to its end (completed, failed, retrying, cancelled, lost)."),
    ):
        family = HistogramMetricFamily(f"jobs_{kind}_seconds", doc, labels=["job_type"])
        for job_type in sorted(set(job_types) | _types_of(reading, f"{kind}_seconds_count")):
            buckets = {
                label: value
                for (name, of_type, label), value in reading.counters.items()
                if name == f"{kind}_seconds_bucket" and of_type == job_type
            }
            counts = [buckets.get(_bound_label(bound), 0.0) for bound in DURATION_BOUNDS] + [buckets.get("+Inf", 0.0)]
            family.add_metric(
                [job_type],
                _cumulative(DURATION_BOUNDS, counts),
                reading.counters.get((f"{kind}_seconds_sum", job_type, ""), 0.0),
            )
        yield family
    yield from _broker(reading, depths, job_types)
    yield from _workers(reading)


def _jobs_now(reading: metrics.Reading, job_types: dict[str, str]) -> Iterator[Metric]:
    waiting: dict[tuple[str, str, str], float] = {
        (job_type, queue, status): 0 for job_type, queue in job_types.items() for status in WAITING
    }
    running: dict[tuple[str, str], float] = dict.fromkeys(job_types.items(), 0)
    for row in reading.unfinished:
        if row.status == "active":
            running[(row.job_type, row.queue)] = row.jobs
        else:
            waiting[(row.job_type, row.queue, row.status)] = row.jobs
    family = GaugeMetricFamily(
        "jobs_waiting",
        "Jobs waiting to run (rows pending or retrying), due or not.",
        labels=["job_type", "queue", "status"],
    )
    for labels, value in sorted(waiting.items()):
        family.add_metric(list(labels), value)
    yield family
    family = GaugeMetricFamily("jobs_running", "Jobs running (rows active).", labels=["job_type", "queue"])
    for labels, value in sorted(running.items()):
        family.add_metric(list(labels), value)
    yield family
    family = GaugeMetricFamily(
        "jobs_oldest_waiting_seconds",
        "Seconds since the waiting job of the queue that has been due the longest became due (0: none is).",
        labels=["queue"],
    )
    for queue in sorted(set(job_types.values()) | reading.oldest_waiting_s.keys()):
        family.add_metric([queue], reading.oldest_waiting_s.get(queue, 0.0))
    yield family


def _counters(reading: metrics.Reading, job_types: dict[str, str]) -> Iterator[Metric]:
    for name, series, doc, label, always in COUNTERS:
        family = CounterMetricFamily(series, doc, labels=["job_type"] + ([label] if label else []))
        values = {(job_type, value): 0.0 for job_type in job_types for value in (always if label else ("",))}
        for (counted, job_type, value), number in reading.counters.items():
            if counted == name:
                values[(job_type, value)] = number
        for (job_type, value), number in sorted(values.items()):
            family.add_metric([job_type] + ([value] if label else []), number)
        yield family


def _broker(reading: metrics.Reading, depths: dict[str, Depth] | None, job_types: dict[str, str]) -> Iterator[Metric]:
    family = GaugeMetricFamily("jobs_broker_up", "1 when Redis answered this scrape, 0 when it did not.")
    family.add_metric([], 0 if depths is None else 1)
    yield family
    family = GaugeMetricFamily(
        "jobs_broker_messages",
        "Messages Redis holds for the queue: queued, delayed (a delay, a retry's backoff), unacked (taken by a"
        " worker: running or prefetched). Beside jobs_waiting and jobs_running, a gap says reconcile has work.",
        labels=["queue", "state"],
    )
    for queue, depth in sorted((depths or {}).items()):
        for state in ("queued", "delayed", "unacked"):
            family.add_metric([queue, state], getattr(depth, state))
    yield family


def _workers(reading: metrics.Reading) -> Iterator[Metric]:
    family = GaugeMetricFamily("jobs_workers_alive", "Worker processes whose lease runs.")
    family.add_metric([], sum(worker.live for worker in reading.workers))
    yield family
    family = GaugeMetricFamily(
        "jobs_workers_lost", "Worker processes seen in the last hour whose lease ran out without a stop."
    )
    family.add_metric([], sum(not worker.live for worker in reading.workers))
    yield family
    family = GaugeMetricFamily(
        "jobs_worker_heartbeat_age_seconds",
        "Seconds since the last heartbeat of each worker process not stopped and seen in the last hour.",
        labels=["worker", "host"],
    )
    for worker in reading.workers:
        family.add_metric([worker.worker_id, worker.hostname], worker.heartbeat_age_s)
    yield family
    yield from _reports(reading.reports)


def _reports(reports: dict[str, dict[str, Any]]) -> Iterator[Metric]:
    """Each live worker's own numbers (middleware/report.py). What a report holds is checked: a
    value that isn't what this release sends leaves that series of that worker out."""
    gauges = {
        "progress_queue": GaugeMetricFamily(
            "jobs_progress_queue", "Jobs whose progress report waits in the worker's writer.", labels=["worker"]
        )
    }
    counters = {
        "progress_dropped": CounterMetricFamily(
            "jobs_progress_dropped", "Progress reports the worker dropped, its writer full.", labels=["worker"]
        ),
        "reconcile_resends": CounterMetricFamily(
            "jobs_reconcile_resends",
            "Waiting jobs the worker published again, Redis having lost them.",
            labels=["worker"],
        ),
        "requeued_messages": CounterMetricFamily(
            "jobs_requeued_messages",
            "Messages of lost workers the worker's reaper put back in their queues.",
            labels=["worker"],
        ),
    }
    batches = HistogramMetricFamily(
        "jobs_group_commit_batch_size", "Status writes per transaction of the worker's group commit.", labels=["worker"]
    )
    writes = HistogramMetricFamily(
        "jobs_status_write_seconds",
        "Seconds a status hook of the worker waited for its write (start or end), retries included.",
        labels=["worker", "write"],
    )
    for worker, report in sorted(reports.items()):
        for key, family in [*gauges.items(), *counters.items()]:
            if _count(report.get(key)):
                family.add_metric([worker], report[key])
        buckets = _histogram(report.get("group_commit_batch_size"), BATCH_BOUNDS)
        if buckets is not None:
            batches.add_metric([worker], *buckets)
        for write in ("start", "end"):
            buckets = _histogram((report.get("status_write_seconds") or {}).get(write), WRITE_SECONDS_BOUNDS)
            if buckets is not None:
                writes.add_metric([worker, write], *buckets)
    yield from gauges.values()
    yield from counters.values()
    yield batches
    yield writes


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _histogram(value: object, bounds: Sequence[float]) -> tuple[list[tuple[str, float]], float] | None:
    if not isinstance(value, dict):
        return None
    counts, total = value.get("counts"), value.get("sum")
    if not isinstance(counts, list) or len(counts) != len(bounds) + 1 or not all(map(_count, counts)):
        return None
    if not isinstance(total, (int, float)) or isinstance(total, bool) or not math.isfinite(total):
        return None
    return _cumulative(bounds, counts), float(total)


def _cumulative(bounds: Sequence[float], counts: Sequence[float]) -> list[tuple[str, float]]:
    """Prometheus' buckets: each counts every observation up to its bound."""
    buckets, running = [], 0.0
    for bound, count in zip([*bounds, math.inf], counts, strict=True):
        running += count
        buckets.append((_bound_label(bound), running))
    return buckets


def _bound_label(bound: float) -> str:
    """A bound as PostgreSQL writes a float8 (the labels of job_metrics), and as `le` shows it."""
    if math.isinf(bound):
        return "+Inf"
    return str(int(bound)) if float(bound).is_integer() else repr(float(bound))


def _types_of(reading: metrics.Reading, name: str) -> set[str]:
    return {job_type for (counted, job_type, _), _ in reading.counters.items() if counted == name}


def known_job_types() -> dict[str, str]:
    """Each job type this release runs, with its queue."""
    from actors import JOB_TYPES

    return {name: actor.queue_name for name, actor in JOB_TYPES.items()}
