"""`jobctl demo`: real worker processes run a mix of jobs while their statuses are shown live."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import db
from middleware.settings import Settings

TERMINAL = ("completed", "failed", "cancelled")
REFRESH_S = 0.5


@dataclass(frozen=True)
class Planned:
    label: str
    job_type: str
    org: int
    args: dict[str, Any]
    delay_ms: int | None
    expected: str
    #: The demo cancels it, as its organization's admin, once it runs.
    cancel_while_running: bool = False


def _plan(tenants: dict[str, Any]) -> list[Planned]:
    acme, globex = tenants["organizations"]
    return [
        Planned("quick", "test_job", 0, {}, None, "completed"),
        Planned("slow, reports progress", "test_job", 0, {"delay_ms": 4000}, None, "completed"),
        Planned("cancelled while running", "test_job", 1, {"delay_ms": 20_000}, None, "cancelled", True),
        Planned("starts after 2 s", "test_job", 1, {"delay_ms": 500}, 2000, "completed"),
        Planned("fails on purpose", "test_job", 1, {"should_fail": True}, None, "failed"),
        Planned("fails twice, then works", "test_job", 0, {"fail_attempts": 2}, None, "completed"),
        Planned("fails every attempt", "test_job", 1, {"fail_attempts": 99}, None, "failed"),
        Planned("initialize Acme course", "initialize", 0, {"course_id": acme["courses"][0]["id"]}, None, "completed"),
        Planned(
            "initialize Globex course", "initialize", 1, {"course_id": globex["courses"][0]["id"]}, None, "completed"
        ),
        *(Planned(f"burst {n}", "test_job", n % 2, {"delay_ms": 50 * n}, None, "completed") for n in range(1, 9)),
    ]


def run_demo(settings: Settings, *, processes: int, threads: int, timeout: float) -> int:
    db.migrate(settings.admin_database_url)
    import actors  # noqa: F401 - configures the database and the broker from the same settings
    from db.fixtures import seed

    from . import service

    tenants = seed(settings.admin_database_url)
    log_dir = Path(".demo")
    log_dir.mkdir(exist_ok=True)
    log_path = log_dir / "workers.log"
    # Short retry backoff so that the retried jobs finish while you watch.
    env = {"JOBS_LOG_FORMAT": "json", "JOBS_MIN_BACKOFF_MS": "500", "JOBS_MAX_BACKOFF_MS": "2000", **os.environ}
    with open(log_path, "w") as log:
        workers = subprocess.Popen(
            # jobs.worker, not bare `dramatiq actors`: Dramatiq's main process then logs JSON too.
            [sys.executable, "-m", "jobs.worker", "--processes", str(processes), "--threads", str(threads)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        plan = _plan(tenants)
        jobs = []
        for item in plan:
            user = tenants["organizations"][item.org]["users"][1]["id"]
            jobs.append(service.send_job(item.job_type, user_id=user, args=item.args, delay_ms=item.delay_ms))
        print(f"sent {len(jobs)} jobs to {processes} worker processes x {threads} threads (worker logs: {log_path})\n")
        rows = _watch(jobs, plan, tenants, timeout)
    finally:
        workers.send_signal(signal.SIGTERM)
        workers.wait(timeout=60)

    wrong = [
        (p.label, p.expected, rows[j]["status"])
        for p, j in zip(plan, jobs, strict=True)
        if rows[j]["status"] != p.expected
    ]
    index = [p.label for p in plan].index("fails twice, then works")
    retried = jobs[index]
    owner = tenants["organizations"][plan[index].org]["users"][1]
    print(
        f"\nhistory of 'fails twice, then works', as its owner sees it (jobctl show {retried} --as {owner['email']}):"
    )
    for event in service.job_history(retried, as_user=owner["id"]):
        change = f"{event['from_status'] or ''} -> {event['to_status']}" if event["to_status"] else ""
        print(f"  {event['created_at']:%H:%M:%S.%f}  {event['event']:<16} {change:<22} attempt {event['attempt']}")
    if wrong:
        print(f"\n{len(wrong)} job(s) did not end as expected: {wrong}", file=sys.stderr)
        return 1
    print(f"\nall {len(jobs)} jobs ended as expected; workers stopped (exit code {workers.returncode}).")
    return 0 if workers.returncode == 0 else 1


def _watch(jobs: list[str], plan: list[Planned], tenants: dict[str, Any], timeout: float) -> dict[str, dict[str, Any]]:
    from db import queries

    from . import service

    live = sys.stdout.isatty()
    deadline = time.monotonic() + timeout
    last = None
    to_cancel = {job_id: item for item, job_id in zip(plan, jobs, strict=True) if item.cancel_while_running}
    while True:
        # The operator's view, across organizations (the workers' role sees every tenant).
        rows = {job_id: queries.get_job(job_id) for job_id in jobs}
        for job_id, item in list(to_cancel.items()):
            if rows[job_id]["status"] == "active" and rows[job_id]["progress"] >= 10:
                admin = next(u for u in tenants["organizations"][item.org]["users"] if u["role"] == "admin")
                service.cancel_job(job_id, admin["id"], reason="cancelled by the demo")
                del to_cancel[job_id]
        table = _table(jobs, plan, rows)
        if live:
            print("\x1b[H\x1b[J" + table, flush=True)
        elif table != last:
            print(table + "\n", flush=True)
        last = table
        if all(row["status"] in TERMINAL for row in rows.values()):
            return rows
        if time.monotonic() > deadline:
            raise TimeoutError(f"jobs still running after {timeout:.0f}s: see {len(jobs)} rows above")
        time.sleep(REFRESH_S)  # a display refresh, not a wait for an outcome


def _table(jobs: list[str], plan: list[Planned], rows: dict[str, dict[str, Any]]) -> str:
    lines = [f"{'job':<26} {'type':<10} {'status':<10} {'try':>3}  {'progress':<22} note"]
    for item, job_id in zip(plan, jobs, strict=True):
        row = rows[job_id]
        bar = "#" * (row["progress"] // 10)
        note = row["error_message"] or (row["progress_message"] if row["status"] == "active" else "") or ""
        if row["status"] in ("pending", "retrying") and row["scheduled_for"] is not None:
            note = f"due {row['scheduled_for']:%H:%M:%S.%f}"[:-3]
        lines.append(
            f"{item.label:<26} {item.job_type:<10} {row['status']:<10} {row['attempts']:>3}  "
            f"{bar:<10} {row['progress']:>3}%      {note[:60]}"
        )
    counts: dict[str, int] = {}
    for row in rows.values():
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    lines.append("  ".join(f"{status}: {n}" for status, n in sorted(counts.items())))
    return "\n".join(lines)
