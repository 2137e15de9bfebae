"""`jobctl demo`: real worker processes run a mix of jobs while their statuses are shown live."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import db
from db import worker_limits
from middleware.settings import Settings

from .cli.common import one_line

TERMINAL = ("completed", "failed", "cancelled")
REFRESH_S = 0.5
#: The live view's columns (the labels say which jobs are not test_jobs); the note takes what
#: the terminal's width leaves: 30 characters of 80.
HEADER = f"{'job':<24} {'status':<9} {'try':>3} {'progress':<10} note"


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


def planned_jobs(tenants: dict[str, Any]) -> list[Planned]:
    """The demo's jobs, for the seed's tenants (`db.fixtures.seed`)."""
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
    worker_limits.record(settings.admin_database_url, settings.worker_limits())
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
        plan = planned_jobs(tenants)
        jobs = send_plan(plan, tenants)
        # In every frame: a message printed before the first would be painted over.
        workers_text = f"{processes} process{'es' if processes != 1 else ''} x {threads} threads"
        hint = f"worker logs: {log_path}  ({len(jobs)} jobs, {workers_text})"
        rows = _watch(jobs, plan, tenants, timeout, hint)
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
        f"\nhistory of 'fails twice, then works', as its owner sees it\n"
        f"(jobctl show {retried[:8]} --as {owner['email']}):"
    )
    for event in service.job_history(retried, as_user=owner["id"]):
        change = f"{event['from_status'] or ''} -> {event['to_status']}" if event["to_status"] else ""
        print(f"  {event['created_at']:%H:%M:%S.%f}  {event['event']:<16} {change:<22} attempt {event['attempt']}")
    if wrong:
        print(f"\n{len(wrong)} job(s) did not end as expected: {wrong} (worker logs: {log_path})", file=sys.stderr)
        return 1
    print(f"\nall {len(jobs)} jobs ended as expected; workers stopped (exit code {workers.returncode}).")
    print(f"worker logs: {log_path}")
    return 0 if workers.returncode == 0 else 1


def send_plan(plan: list[Planned], tenants: dict[str, Any]) -> list[str]:
    """Sends the planned jobs, each as a member of its organization; returns their ids, in order."""
    from . import service

    jobs = []
    for item in plan:
        user = tenants["organizations"][item.org]["users"][1]["id"]
        jobs.append(service.send_job(item.job_type, user_id=user, args=item.args, delay_ms=item.delay_ms))
    return jobs


def _watch(
    jobs: list[str], plan: list[Planned], tenants: dict[str, Any], timeout: float, hint: str
) -> dict[str, dict[str, Any]]:
    from db import queries

    from . import service

    live = sys.stdout.isatty()
    deadline = time.monotonic() + timeout
    last = None
    to_cancel = {job_id: item for item, job_id in zip(plan, jobs, strict=True) if item.cancel_while_running}
    try:
        while True:
            # The operator's view, across organizations (the workers' role sees every tenant).
            rows = {job_id: queries.get_job(job_id) for job_id in jobs}
            for job_id, item in list(to_cancel.items()):
                if rows[job_id]["status"] == "active" and rows[job_id]["progress"] >= 10:
                    admin = next(u for u in tenants["organizations"][item.org]["users"] if u["role"] == "admin")
                    service.cancel_job(job_id, admin["id"], reason="cancelled by the demo")
                    del to_cancel[job_id]
            ordered = [rows[job_id] for job_id in jobs]
            size = shutil.get_terminal_size()
            if live:
                # One column spare: a line that fills the last one leaves the cursor there, and
                # clearing to the end of the line would then erase its last character.
                lines = frame(plan, ordered, hint=hint, width=size.columns - 1, height=size.lines)
                sys.stdout.write(paint(lines))
                sys.stdout.flush()
            else:
                lines = frame(plan, ordered, hint=hint, width=size.columns)
                if lines != last:
                    print("\n".join(lines) + "\n", flush=True)
            last = lines
            if all(row["status"] in TERMINAL for row in ordered):
                return rows
            if time.monotonic() > deadline:
                raise TimeoutError(f"jobs still running after {timeout:.0f}s: see the {len(jobs)} rows above")
            time.sleep(REFRESH_S)  # a display refresh, not a wait for an outcome
    finally:
        if live:
            print(flush=True)  # below the last frame, which ends without a newline


def frame(
    plan: list[Planned], rows: list[dict[str, Any]], *, hint: str, width: int, height: int | None = None
) -> list[str]:
    """The live view, as lines: the hint, the columns' names, one line per job (its row, in the
    plan's order) and the counts by status; every line cut to `width` (never wrapped) and, given
    a `height`, no more lines than that: the jobs that don't fit are counted instead."""
    body = [_job_line(item, row) for item, row in zip(plan, rows, strict=True)]
    if height is not None and len(body) + 3 > height:
        shown = max(height - 4, 0)
        body = [*body[:shown], f"... {len(body) - shown} more jobs (a taller terminal shows them)"]
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    lines = [hint, HEADER, *body, "  ".join(f"{status}: {n}" for status, n in sorted(counts.items()))]
    return [line[:width] for line in lines[:height]]


def paint(lines: list[str]) -> str:
    """A frame for a terminal, drawn over the last one: from the top-left corner, each line cleared
    past its end, the rest of the screen cleared, and no newline after the last line, so that a
    frame no taller than the screen never scrolls it."""
    return "\x1b[H" + "\x1b[K\n".join(lines) + "\x1b[K\x1b[J"


def _job_line(item: Planned, row: dict[str, Any]) -> str:
    progress = f"{'#' * (row['progress'] // 20):<5}{row['progress']:>4}%"
    note = row["error_message"] or (row["progress_message"] if row["status"] == "active" else "") or ""
    if row["status"] in ("pending", "retrying") and row["scheduled_for"] is not None:
        note = f"due {row['scheduled_for']:%H:%M:%S.%f}"[:-3]
    return f"{item.label:<24.24} {row['status']:<9} {row['attempts']:>3} {progress} {one_line(note)}"
