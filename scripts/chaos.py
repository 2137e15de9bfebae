#!/usr/bin/env python3
"""A bounded chaos run: real worker processes, mixed jobs, workers killed with SIGKILL at random.

Starts `dramatiq actors` processes, sends jobs of mixed kinds (quick, slow, failing, retried,
delayed, course initializations, and long ones that their owner cancels), kills a random worker
process group with SIGKILL every few seconds and starts a new one, then waits for every job to
end. Prints one summary line and exits 1 unless no job was lost, none ran twice at once, and
no row or history breaks an invariant.

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

os.environ.setdefault("JOBS_NAMESPACE", "jobs-chaos")

import actors  # noqa: E402 - configures the database and the broker from the environment above
import db  # noqa: E402
from db.audit import broken_rows, out_of_order_events, overlapping_executions  # noqa: E402
from db.connection import database  # noqa: E402
from db.fixtures import seed  # noqa: E402
from jobs import service  # noqa: E402
from jobs.errors import JobAlreadyFinished  # noqa: E402
from middleware.log_format import configure_logging  # noqa: E402

# Short windows so that recovery happens within the run; the broker's own requeue of messages
# a dead worker had prefetched (never started, so not the reaper's) is made frequent too.
WORKER_ENV = {
    "JOBS_HEARTBEAT_S": "0.5",
    "JOBS_RECOVERY_WINDOW_S": "3",
    "JOBS_RECONCILE_S": "5",
    "JOBS_MAX_DELIVERIES": "10",
    "JOBS_MIN_BACKOFF_MS": "100",
    "JOBS_MAX_BACKOFF_MS": "1000",
    "JOBS_BROKER_HEARTBEAT_TIMEOUT_MS": "5000",
    "JOBS_BROKER_MAINTENANCE_CHANCE": "50000",
    "JOBS_LOG_FORMAT": "json",
}
TERMINAL = ("completed", "failed", "cancelled")


class Workers:
    def __init__(self, count: int, threads: int, log_dir: str) -> None:
        self.threads = threads
        self.log_dir = log_dir
        self.started = 0
        self.processes = [self._start() for _ in range(count)]

    def _start(self) -> subprocess.Popen:
        self.started += 1
        with open(os.path.join(self.log_dir, f"worker-{self.started}.log"), "w") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "dramatiq", "actors", "--processes", "1", "--threads", str(self.threads)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **WORKER_ENV},
                start_new_session=True,  # its own process group: SIGKILL takes the main and its child
            )

    def kill_one(self, rng: random.Random) -> None:
        index = rng.randrange(len(self.processes))
        victim = self.processes[index]
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        self.processes[index] = self._start()

    def stop(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            process.wait(timeout=120)


def plan(rng: random.Random, course: str) -> tuple[str, dict, int | None, bool]:
    """(job type, arguments, send delay, whether its owner cancels it)"""
    roll = rng.random()
    if roll < 0.55:
        return "test_job", {"delay_ms": rng.randrange(0, 1500)}, None, False
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
    configure_logging("console", "ERROR")
    rng = random.Random(args.seed)
    deadline = time.monotonic() + args.time_limit

    db.migrate(actors.settings.admin_database_url)
    org = seed(actors.settings.admin_database_url)["organizations"][0]
    owner, course = org["users"][1]["id"], org["courses"][0]["id"]
    actors.broker.flush_all()
    log_dir = tempfile.mkdtemp(prefix="chaos-")
    workers = Workers(args.workers, args.threads, log_dir)

    job_ids: list[str] = []
    to_cancel: list[tuple[float, str]] = []
    kills = 0

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
    kill_until = time.monotonic() + args.time_limit * 0.5
    next_kill = time.monotonic() + rng.uniform(1, 3)
    try:
        while time.monotonic() < deadline:
            now = time.monotonic()
            for due, job_id in [c for c in to_cancel if c[0] <= now]:
                to_cancel.remove((due, job_id))
                try:
                    service.cancel_job(job_id, owner, reason="chaos")
                except JobAlreadyFinished:
                    pass
            if now >= next_kill and now < kill_until:
                workers.kill_one(rng)
                kills += 1
                next_kill = now + rng.uniform(1, 3)
            if not sender.is_alive() and not to_cancel:
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
    lost = len(job_ids) - sum(counts.get(status, 0) for status in TERMINAL)
    duplicated = len({row[0] for row in overlapping_executions(job_ids)})
    violations = len(broken_rows(job_ids)) + len(out_of_order_events(job_ids))
    print(
        f"chaos: jobs={args.jobs} time_limit={args.time_limit:.0f}s workers={args.workers}x{args.threads} "
        f"seed={args.seed} kills={kills} | sent={len(job_ids)} completed={counts.get('completed', 0)} "
        f"failed={counts.get('failed', 0)} cancelled={counts.get('cancelled', 0)} lost={lost} "
        f"duplicated={duplicated} constraint_violations={violations} "
        f"elapsed={args.time_limit - (deadline - time.monotonic()):.0f}s logs={log_dir}"
    )
    return 0 if lost == 0 and duplicated == 0 and violations == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
