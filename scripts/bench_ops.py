#!/usr/bin/env python3
"""Operations at scale; a benchmark, not a test.

  scripts/bench_ops.py metrics [--rows 1000000] [--samples 40]
  scripts/bench_ops.py prune [--rows 1000000] [--batch 500] [--rate 40] [--baseline-s 60]

metrics: job_status filled by SQL to --rows (the status mix of scripts/bench.py scale: 5 % waiting),
then the time of a scrape (GET /metrics' work: jobs.metrics.exposition, database and Redis), p50
and p99, with nothing new to count, and with 1,000 and 10,000 jobs' events committed since the last
count; and how long the first count of every event took (once, after an upgrade).

prune: the same fill, then a real worker process running jobs sent at --rate a second while a probe
thread times status writes (a send, a start and an end of jobs of its own, as a worker writes them):
their p50/p99 for --baseline-s without pruning, then while db.prune deletes every finished job
(--older-than 1 minute) in batches of --batch; the prune rate; and the worker's own status write
latency as its report gives it.

Both use their own database (`<ADMIN_DATABASE_URL's name>_bench_ops`) and Redis namespace.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_env import own_servers  # noqa: E402

from middleware.settings import Settings  # noqa: E402


def _bench_env() -> dict[str, str]:
    return {
        **own_servers("_bench_ops", "jobs-bench-ops"),
        "JOBS_LOG_FORMAT": "json",
        "JOBS_PRUNE_S": "0",  # the benchmark prunes by hand, and times it
    }


os.environ.update(_bench_env())

import psycopg2  # noqa: E402
from bench_scale import fill, tenants  # noqa: E402

import actors  # noqa: E402 - configures the database and the broker from the environment above
import db  # noqa: E402
from db import metrics, prune, transitions, worker_limits  # noqa: E402
from db.connection import database  # noqa: E402
from jobs import service  # noqa: E402
from jobs.metrics import exposition, known_job_types  # noqa: E402
from middleware.log_format import configure_logging  # noqa: E402


def ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def prepare(rows: int) -> dict[str, list[str]]:
    admin_url = os.environ["ADMIN_DATABASE_URL"]
    db.migrate(admin_url)
    settings = Settings.from_env()
    worker_limits.record(admin_url, settings.worker_limits())
    conn = psycopg2.connect(admin_url)
    with conn, conn.cursor() as cursor:
        cursor.execute("TRUNCATE job_events, job_status, job_metrics, worker_reports, workers")
        cursor.execute("UPDATE job_metrics_position SET seen = pg_current_snapshot()")
    conn.close()
    users = tenants(admin_url)
    actors.broker.flush_all()
    fill_s = fill(admin_url, rows)
    started = time.perf_counter()
    counted = metrics.count_events(wait=True, pages=10_000)
    print(
        f"  filled {rows} jobs in {fill_s:.0f} s; the first count of their {counted} events took "
        f"{time.perf_counter() - started:.1f} s"
    )
    return users


def scrape_times(settings: Settings, samples: int) -> list[float]:
    types = known_job_types()
    durations = []
    for _ in range(samples):
        started = time.perf_counter()
        exposition(settings, types)
        durations.append(time.perf_counter() - started)
    return durations


def new_events(user: str, jobs: int) -> None:
    """`jobs` jobs sent, started and completed (3 events each), by this process as a worker."""
    me = f"bench-ops:{os.getpid()}:probe"
    transitions.heartbeat(me, "bench", os.getpid(), lease_ms=600_000, broker_id=None)
    for _ in range(0, jobs, 500):
        ids = service.send_jobs("test_job", [{}] * 500, user_id=user)
        for job_id in ids:
            transitions.mark_active(job_id, f"{me}/1")
            transitions.mark_completed(job_id, 1, f"{me}/1", {"ok": True})
    actors.broker.flush_all()


def run_metrics(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    print(f"bench ops metrics: {args.rows} rows, {args.samples} scrapes a case")
    users = prepare(args.rows)
    user = users["acme"][1]
    plan = database.execute_sql(
        "EXPLAIN SELECT queue, status, job_type, count(*) FROM job_status"
        " WHERE status IN ('pending', 'retrying', 'active') GROUP BY queue, status, job_type"
    ).fetchall()
    print("  the count of unfinished jobs: " + " / ".join(line.strip().split("  (")[0] for (line,) in plan[:3]))
    waiting = database.execute_sql("SELECT count(*) FROM job_status WHERE status IN ('pending', 'retrying')").fetchone()
    print(f"  {waiting[0]} jobs waiting")
    quiet = scrape_times(settings, args.samples)
    print(f"  scrape, nothing new to count:        p50 {ms(quiet, 0.5):6.1f} ms  p99 {ms(quiet, 0.99):6.1f} ms")
    for jobs in (1_000, 10_000):
        durations = []
        for _ in range(max(3, args.samples // 10)):
            new_events(user, jobs)
            started = time.perf_counter()
            exposition(settings, known_job_types())
            durations.append(time.perf_counter() - started)
        print(
            f"  scrape after {jobs:>6} jobs ({3 * jobs} events): p50 {ms(durations, 0.5):6.1f} ms"
            f"  p99 {ms(durations, 0.99):6.1f} ms"
        )
    return 0


class Probe(threading.Thread):
    """Times status writes as a worker makes them, on jobs of its own, `rate` jobs a second."""

    def __init__(self, user: str, rate: float) -> None:
        super().__init__(daemon=True)
        self.user, self.rate = user, rate
        self.samples: list[tuple[float, float]] = []  # (when, seconds)
        self.stop = threading.Event()
        self.me = f"bench-ops:{os.getpid()}:probe"

    def run(self) -> None:
        transitions.heartbeat(self.me, "bench", os.getpid(), lease_ms=600_000, broker_id=None)
        beat = time.monotonic()
        while not self.stop.is_set():
            if time.monotonic() - beat > 60:
                transitions.heartbeat(self.me, "bench", os.getpid(), lease_ms=600_000, broker_id=None)
                beat = time.monotonic()
            job_id = str(uuid.uuid4())
            pending = transitions.Pending(job_id, self.user, None, [], {}, {})
            writes = (
                (
                    transitions.record_enqueued_many,
                    (),
                    {"job_type": "test_job", "queue": "probe", "max_attempts": 1, "delay_ms": None, "jobs": [pending]},
                ),
                (transitions.mark_active, (job_id, f"{self.me}/1"), {}),
                (transitions.mark_completed, (job_id, 1, f"{self.me}/1", {"ok": True}), {}),
            )
            for write, positional, named in writes:
                started = time.perf_counter()
                write(*positional, **named)
                self.samples.append((time.monotonic(), time.perf_counter() - started))
            self.stop.wait(1 / self.rate)

    def between(self, start: float, end: float) -> list[float]:
        return [seconds for at, seconds in self.samples if start <= at < end]


def run_prune(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    print(f"bench ops prune: {args.rows} rows, batches of {args.batch}, jobs sent at {args.rate}/s")
    users = prepare(args.rows)
    user = users["acme"][1]
    finished = database.execute_sql(
        "SELECT count(*) FROM job_status WHERE status IN ('completed', 'failed', 'cancelled')"
    ).fetchone()[0]
    log = tempfile.NamedTemporaryFile(prefix="bench-ops-worker-", suffix=".log", delete=False)
    worker = subprocess.Popen(
        [sys.executable, "-m", "jobs.worker", "--processes", "1", "--threads", "4"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "DATABASE_URL": os.environ["WORKER_DATABASE_URL"], "JOBS_HEARTBEAT_S": "1"},
        start_new_session=True,
    )
    stop = threading.Event()
    sent: list[str] = []

    def sender() -> None:
        while not stop.is_set():
            sent.append(service.send_job("test_job", user_id=user, args={"delay_ms": 5}))
            stop.wait(1 / args.rate)

    probe = Probe(user, rate=20)
    try:
        time.sleep(3)  # the worker boots and heartbeats
        threading.Thread(target=sender, daemon=True).start()
        probe.start()
        quiet_from = time.monotonic()
        time.sleep(args.baseline_s)
        quiet_to = time.monotonic()
        before = worker_histogram()
        started = time.perf_counter()
        done = prune.prune(
            os.environ["ADMIN_DATABASE_URL"], settings.db_limits(), older_than_ms=60_000, batch=args.batch
        )
        took = time.perf_counter() - started
        pruning_to = time.monotonic()
        after = worker_histogram()
        stop.set()
        probe.stop.set()
        probe.join()
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    quiet, busy = probe.between(quiet_from, quiet_to), probe.between(quiet_to, pruning_to)
    print(
        f"  {finished} finished jobs before; pruned {done.total_jobs} jobs and {sum(done.events.values())} events"
        f" in {took:.0f} s ({done.batches} batches): {done.total_jobs / took:.0f} jobs/s"
    )
    print(
        f"  probe status writes without pruning ({len(quiet)}): p50 {ms(quiet, 0.5):.2f} ms  p99 {ms(quiet, 0.99):.2f} ms"
        f"  max {max(quiet) * 1000:.1f} ms"
    )
    print(
        f"  probe status writes while pruning   ({len(busy)}): p50 {ms(busy, 0.5):.2f} ms  p99 {ms(busy, 0.99):.2f} ms"
        f"  max {max(busy) * 1000:.1f} ms"
    )
    print(
        f"  the worker's own status writes (its report), before the prune: {before}; during it: {delta(before, after)}"
    )
    print(f"  jobs sent meanwhile: {len(sent)}, of which completed: {completed(sent)}")
    return 0


def worker_histogram() -> str:
    rows = database.execute_sql("SELECT report -> 'status_write_seconds' FROM worker_reports").fetchall()
    return rows[0][0] if rows else {}


def delta(before: dict, after: dict) -> str:
    from db.measures import WRITE_SECONDS_BOUNDS

    parts = []
    for write in ("start", "end"):
        counts = [a - b for a, b in zip(after[write]["counts"], before[write]["counts"], strict=True)]
        parts.append(f"{write} {quantile(counts, WRITE_SECONDS_BOUNDS, 0.99)}")
    return ", ".join(parts)


def quantile(counts: list[int], bounds: tuple[float, ...], q: float) -> str:
    total = sum(counts)
    if not total:
        return "none"
    running = 0
    for bound, count in zip([*bounds, float("inf")], counts, strict=True):
        running += count
        if running >= q * total:
            return f"p99 <= {bound * 1000:g} ms ({total} writes)"
    return "?"


def completed(job_ids: list[str]) -> int:
    return database.execute_sql(
        "SELECT count(*) FROM job_status WHERE job_id = ANY(%s::uuid[]) AND status = 'completed'", (job_ids,)
    ).fetchone()[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("metrics", "prune"))
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rate", type=float, default=40.0)
    parser.add_argument("--baseline-s", type=float, default=60.0)
    args = parser.parse_args()
    configure_logging("console", "ERROR")
    return run_metrics(args) if args.mode == "metrics" else run_prune(args)


if __name__ == "__main__":
    sys.exit(main())
