#!/usr/bin/env python3
"""A bounded chaos run: real worker processes, mixed jobs, and everything between them broken.

Starts `dramatiq actors` processes, each reaching PostgreSQL through a TCP proxy of its own
(tests/support/proxy.py), sends jobs of mixed kinds (quick, slow, longer than a worker's lease,
failing, retried, delayed, course initializations, and long ones that their owner cancels), and
during the first half of the run, every few seconds, one of:

  kill        SIGKILL a worker's process group, and start a new one
  redis       CLIENT KILL every Redis connection of the workers
  backends    pg_terminate_backend every database session of the workers
  partition   cut one worker off from PostgreSQL for longer than its lease
  outage      cut every worker off from PostgreSQL for longer than their leases

then waits for every job to end. Prints one summary line and exits 1 unless no job was lost,
none ran twice at once (two executions of one job overlapping in time, from the events:
db.audit.overlapping_executions) and no row or history breaks an invariant.

Usage: scripts/chaos.py [--jobs N] [--time-limit S] [--workers K] [--threads T] [--seed N]
Runs in its own Redis namespace (JOBS_NAMESPACE, default jobs-chaos) and the configured database.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("JOBS_NAMESPACE", "jobs-chaos")

import psycopg2  # noqa: E402
import redis  # noqa: E402

import actors  # noqa: E402 - configures the database and the broker from the environment above
import db  # noqa: E402
from db import worker_limits  # noqa: E402
from db.audit import broken_rows, out_of_order_events, overlapping_executions  # noqa: E402
from db.connection import database  # noqa: E402
from db.fixtures import seed  # noqa: E402
from jobs import service  # noqa: E402
from jobs.errors import JobAlreadyFinished  # noqa: E402
from middleware.log_format import configure_logging  # noqa: E402
from middleware.settings import Settings  # noqa: E402
from tests.support.proxy import Proxy  # noqa: E402

LEASE_S = 3.0
# Short leases so that recovery happens within the run; the broker's own requeue of a dead
# worker's messages is made frequent too (the reaper's does not depend on it).
WORKER_ENV = {
    "JOBS_HEARTBEAT_S": "0.5",
    "JOBS_RECOVERY_WINDOW_S": str(LEASE_S),
    "JOBS_LEASE_MARGIN_S": "1",
    "JOBS_RECONCILE_S": "5",
    "JOBS_MAX_DELIVERIES": "10",
    "JOBS_MIN_BACKOFF_MS": "100",
    "JOBS_MAX_BACKOFF_MS": "1000",
    "JOBS_BROKER_HEARTBEAT_TIMEOUT_MS": "5000",
    "JOBS_BROKER_MAINTENANCE_CHANCE": "50000",
    "JOBS_LOG_FORMAT": "json",
}
# Every Redis connection of a worker carries this name, for CLIENT KILL to find.
REDIS_CLIENT = "chaos-worker"
TERMINAL = ("completed", "failed", "cancelled")
FAULTS = {"kill": 35, "redis": 20, "backends": 20, "partition": 15, "outage": 10}


class Workers:
    """Worker processes, each behind a PostgreSQL proxy of its own."""

    def __init__(self, count: int, threads: int, log_dir: str) -> None:
        self.threads = threads
        self.log_dir = log_dir
        self.started = 0
        self.proxies = [Proxy(("127.0.0.1", 5432)) for _ in range(count)]
        for proxy in self.proxies:
            proxy.start()
        self.processes = [self._start(slot) for slot in range(count)]

    def _start(self, slot: int) -> subprocess.Popen:
        self.started += 1
        separator = "&" if "?" in actors.settings.redis_url else "?"
        env = {
            **os.environ,
            **WORKER_ENV,
            "DATABASE_URL": self.proxies[slot].url_for(actors.settings.worker_database_url),
            "REDIS_URL": f"{actors.settings.redis_url}{separator}client_name={REDIS_CLIENT}",
        }
        with open(os.path.join(self.log_dir, f"worker-{self.started}.log"), "w") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "dramatiq", "actors", "--processes", "1", "--threads", str(self.threads)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
                start_new_session=True,  # its own process group: SIGKILL takes the main and its child
            )

    def restart_exited(self) -> int:
        """Starts again, as a supervisor would, every worker that ended itself (status 75: a job
        would not stop before its lease ran out)."""
        restarted = 0
        for slot, process in enumerate(self.processes):
            if process.poll() is not None:
                self.processes[slot] = self._start(slot)
                restarted += 1
        return restarted

    def kill_one(self, rng: random.Random) -> None:
        slot = rng.randrange(len(self.processes))
        victim = self.processes[slot]
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        self.processes[slot] = self._start(slot)

    def cut(self, slots: list[int]) -> None:
        for slot in slots:
            self.proxies[slot].cut()

    def heal(self) -> None:
        for proxy in self.proxies:
            proxy.heal()

    def stop(self) -> None:
        self.heal()
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            process.wait(timeout=120)
        for proxy in self.proxies:
            proxy.close()


def kill_redis_clients() -> int:
    client = redis.Redis.from_url(actors.settings.redis_url)
    killed = 0
    for entry in client.client_list():
        if entry.get("name") == REDIS_CLIENT:
            killed += client.client_kill_filter(_id=entry["id"])
    return killed


def terminate_worker_backends() -> int:
    """Every session of the workers' role in this database (the run's own sender's too: its sends
    reconnect), except the one this thread reads and cancels with."""
    own = database.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
    admin = psycopg2.connect(actors.settings.admin_database_url)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND usename = 'jobs_worker' AND pid <> %s",
                (own,),
            )
            return cursor.fetchone()[0]
    finally:
        admin.close()


def plan(rng: random.Random, course: str) -> tuple[str, dict, int | None, bool]:
    """(job type, arguments, send delay, whether its owner cancels it)"""
    roll = rng.random()
    if roll < 0.45:
        return "test_job", {"delay_ms": rng.randrange(0, 1500)}, None, False
    if roll < 0.55:
        # Longer than a worker's lease: a partition or an outage catches some of them running.
        return "test_job", {"delay_ms": rng.randrange(int(LEASE_S * 1000), int(LEASE_S * 2000))}, None, False
    if roll < 0.65:
        return "test_job", {"delay_ms": rng.randrange(0, 300), "fail_attempts": 1}, None, False
    if roll < 0.70:
        return "test_job", {"should_fail": True}, None, False
    if roll < 0.75:
        return "initialize", {"course_id": course}, None, False
    if roll < 0.85:
        return "test_job", {"delay_ms": rng.randrange(0, 300)}, rng.randrange(0, 2000), False
    return "test_job", {"delay_ms": 3000, "check_cancellation": True}, None, True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--time-limit", type=float, default=120.0, help="seconds for the whole run")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if min(args.jobs, args.workers, args.threads) < 1 or args.time_limit <= 0:
        parser.error("--jobs, --workers and --threads must be 1 or more, and --time-limit more than 0")
    configure_logging("console", "ERROR")
    rng = random.Random(args.seed)
    started = time.monotonic()
    deadline = started + args.time_limit

    # The database decides the workers' lease and delivery limit: from their configuration.
    db.migrate(actors.settings.admin_database_url)
    worker_limits.record(
        actors.settings.admin_database_url, Settings.from_env({**os.environ, **WORKER_ENV}).worker_limits()
    )
    org = seed(actors.settings.admin_database_url)["organizations"][0]
    owner, course = org["users"][1]["id"], org["courses"][0]["id"]
    actors.broker.flush_all()
    log_dir = tempfile.mkdtemp(prefix="chaos-")
    workers = Workers(args.workers, args.threads, log_dir)

    job_ids: list[str] = []
    to_cancel: list[tuple[float, str]] = []
    faults = dict.fromkeys(FAULTS, 0)
    restarts = 0

    def send_all() -> None:
        for _ in range(args.jobs):
            job_type, job_args, delay_ms, cancel = plan(rng, course)
            job_id = service.send_job(job_type, user_id=owner, args=job_args, delay_ms=delay_ms)
            job_ids.append(job_id)
            if cancel:
                to_cancel.append((time.monotonic() + rng.uniform(0.2, 2.0), job_id))
            threading.Event().wait(0.01)
        database.close()

    sender = threading.Thread(target=send_all)
    sender.start()
    faults_until = started + args.time_limit * 0.5
    next_fault = started + rng.uniform(1, 3)
    heal_at: float | None = None
    try:
        while time.monotonic() < deadline:
            now = time.monotonic()
            for due, job_id in [c for c in to_cancel if c[0] <= now]:
                to_cancel.remove((due, job_id))
                try:
                    service.cancel_job(job_id, owner, reason="chaos")
                except JobAlreadyFinished:
                    pass
            restarts += workers.restart_exited()
            if heal_at is not None and now >= heal_at:
                workers.heal()
                heal_at = None
            if heal_at is None and faults_until > now >= next_fault:
                fault = rng.choices(list(FAULTS), weights=list(FAULTS.values()))[0]
                faults[fault] += 1
                if fault == "kill":
                    workers.kill_one(rng)
                elif fault == "redis":
                    kill_redis_clients()
                elif fault == "backends":
                    terminate_worker_backends()
                else:
                    slots = list(range(args.workers))
                    workers.cut([rng.choice(slots)] if fault == "partition" else slots)
                    heal_at = now + LEASE_S + rng.uniform(0.5, 2.0)
                next_fault = now + rng.uniform(1, 3)
            if not sender.is_alive() and not to_cancel and heal_at is None:
                rows = database.execute_sql(
                    "SELECT count(*) FROM job_status WHERE job_id = ANY(%s::uuid[]) AND status <> ALL(%s)",
                    (job_ids, list(TERMINAL)),
                ).fetchone()[0]
                if rows == 0:
                    break
            time.sleep(0.1)  # the run's own pace, not a wait for an outcome
    finally:
        sender.join()
        workers.stop()

    counts = dict(
        database.execute_sql(
            "SELECT status, count(*) FROM job_status WHERE job_id = ANY(%s::uuid[]) GROUP BY status", (job_ids,)
        ).fetchall()
    )
    at_limit = database.execute_sql(
        "SELECT count(*) FROM job_status WHERE job_id = ANY(%s::uuid[]) AND status = 'failed'"
        " AND error_type IN ('WorkerLost', 'LeaseExpired')",
        (job_ids,),
    ).fetchone()[0]
    lost = len(job_ids) - sum(counts.get(status, 0) for status in TERMINAL)
    duplicated = len({row[0] for row in overlapping_executions(job_ids)})
    violations = len(broken_rows(job_ids)) + len(out_of_order_events(job_ids))
    print(
        f"chaos: jobs={args.jobs} time_limit={args.time_limit:.0f}s workers={args.workers}x{args.threads} "
        f"seed={args.seed} faults: {' '.join(f'{name}={n}' for name, n in faults.items())} "
        f"restarted={restarts} | "
        f"sent={len(job_ids)} completed={counts.get('completed', 0)} failed={counts.get('failed', 0)} "
        f"(delivery limit {at_limit}) cancelled={counts.get('cancelled', 0)} lost={lost} "
        f"duplicated={duplicated} constraint_violations={violations} "
        f"elapsed={time.monotonic() - started:.0f}s logs={log_dir}"
    )
    return 0 if lost == 0 and duplicated == 0 and violations == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
