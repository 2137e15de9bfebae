"""What real worker processes log: in a JSON log every line is JSON, one line per outcome at its
level, no password; on a terminal, the console format."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import re
import secrets
import signal
import subprocess
import sys
import threading
from urllib.parse import urlsplit, urlunsplit

import pytest

from db.connection import database
from jobs import service
from tests.acceptance.conftest import DRAMATIQ, JOBS_WORKER, LEASE, QUICK_STOP
from tests.helpers import all_terminal, events, job_row, statuses, wait_for

LOUD = ("warning", "error", "critical")


def with_password(url: str, password: str) -> tuple[str, str]:
    """`url` with a password (its own if it has one): the secret its log must never show."""
    parts = urlsplit(url)
    if parts.password:
        return url, parts.password
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:{password}@{host}")), password


def test_a_json_log_is_all_json_with_one_line_per_outcome_and_no_password(workers, tenants):
    database_url, database_password = with_password(os.environ["WORKER_DATABASE_URL"], "db-s3cret")
    redis_url, redis_password = with_password(os.environ["REDIS_URL"], "redis-s3cret")
    # JOBS_LOG_FORMAT=auto, into a file: JSON. A lease of the usual length: this test counts
    # warnings, and a busy machine must not make a heartbeat late enough to postpone a start.
    usual_lease = {"JOBS_HEARTBEAT_S": "1", "JOBS_RECOVERY_WINDOW_S": "30", "JOBS_LEASE_MARGIN_S": "10"}
    env = {
        "DATABASE_URL": database_url,
        "WORKER_DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "JOBS_LOG_FORMAT": "auto",
        **usual_lease,
    }
    process = workers(threads=4, env=env, command=JOBS_WORKER)
    wait_for(lambda: "lease_acquired" in process.log_path.read_text(), what="the worker's lease", timeout=30)

    owner, admin = tenants.acme.members[0], tenants.acme.admin
    cancelled = service.send_job("test_job", user_id=owner, args={"delay_ms": 30_000})
    jobs = {
        service.send_job("test_job", user_id=owner, args={"delay_ms": 50}): [],
        service.send_job("test_job", user_id=owner, args={"should_fail": True}): [("error", "job_failed")],
        service.send_job("test_job", user_id=owner, args={"fail_attempts": 1}): [("warning", "job_retrying")],
        service.send_job("test_job", user_id=owner, args={"fail_attempts": 9}): [("warning", "job_retrying")] * 3
        + [("error", "job_failed")],
        cancelled: [],
    }
    wait_for(lambda: job_row(cancelled)["status"] == "active", what="the long job to start", timeout=30)
    service.cancel_job(cancelled, admin, reason="not needed")
    wait_for(lambda: events(cancelled)[-1][0] == "execution_stopped", what="the worker to stop the job", timeout=30)
    wait_for(all_terminal(list(jobs)), what="every job to end", timeout=30)
    assert set(statuses(list(jobs)).values()) == {"completed", "failed", "cancelled"}
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0

    text = process.log_path.read_text()
    lines = [json.loads(line) for line in text.splitlines()]  # every one of them, the main process's too
    assert database_password not in text and redis_password not in text
    # The first line of the whole log, and the first of the worker process, say what they connect to.
    booted = next(n for n, line in enumerate(lines) if line["event"] == "worker_booted")
    assert lines[0]["event"] == "workers_starting"
    assert all(line["logger"].startswith("dramatiq") for line in lines[1:booted])
    for first in (lines[0], lines[booted]):
        assert (first["database"], first["redis"], first["namespace"]) == (
            database_url.replace(database_password, "***"),
            redis_url.replace(redis_password, "***"),
            os.environ["JOBS_NAMESPACE"],
        )

    loud = [line for line in lines if line["level"] in LOUD]
    assert {
        job_id: [(line["level"], line["event"]) for line in loud if line.get("job_id") == job_id] for job_id in jobs
    } == jobs
    assert all(line.get("job_id") in jobs for line in loud), "nothing else is loud"
    assert not [line for line in lines if "Failed to process message" in line["event"] or "exception" in line]
    ends = [line for line in lines if line["event"] in ("job_completed", "job_failed", "job_cancelled")]
    assert {line["job_id"] for line in ends} == set(jobs)
    assert all(isinstance(line["duration_ms"], int) for line in ends)
    (stopped,) = [line for line in ends if line["job_id"] == cancelled]
    assert (stopped["event"], stopped["level"], stopped["duration_ms"] > 0) == ("job_cancelled", "info", True)


def test_a_worker_logs_no_worker_token_even_at_debug(workers, tenants):
    """Every connection of a worker process presents its secret token (db/worker_token.py); no
    line of its log holds it, DEBUG included. The test can't know the token: it looks for any 43
    characters of the log (token_urlsafe(32)) whose sha256 is the one the worker's heartbeat
    recorded."""
    process = workers(env={"JOBS_LOG_LEVEL": "DEBUG"}, command=JOBS_WORKER)
    owner = tenants.acme.members[0]
    job_ids = [service.send_job("test_job", user_id=owner, args=args) for args in ({}, {"should_fail": True})]
    wait_for(all_terminal(job_ids), what="the jobs to end", timeout=30)
    worker = job_row(job_ids[0])["worker_process"]
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0

    (kept,) = database.execute_sql("SELECT token_hash FROM workers WHERE worker_id = %s", (worker,)).fetchone()
    text = process.log_path.read_text()
    assert '"level": "debug"' in text
    assert kept is not None and not holds_token(text, bytes(kept))
    decoy = secrets.token_urlsafe(32)
    assert holds_token(f'{text}{{"error": "x={decoy}"}}', hashlib.sha256(decoy.encode()).digest()), "it would be seen"


def holds_token(text: str, digest: bytes) -> bool:
    """Whether 43 characters of `text` that could be a token (URL-safe base64) hash to `digest`."""
    words = re.findall(r"[A-Za-z0-9_-]{43,}", text)
    return any(hashlib.sha256(w[n : n + 43].encode()).digest() == digest for w in words for n in range(len(w) - 42))


@pytest.mark.parametrize("command", [DRAMATIQ, JOBS_WORKER], ids=["dramatiq", "jobs.worker"])
def test_the_console_format_is_chosen_on_a_terminal(redis_broker, command):
    terminal, worker_end = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, *command, "--processes", "1", "--threads", "1"],
        stdin=subprocess.DEVNULL,
        stdout=worker_end,
        stderr=worker_end,
        env={**os.environ, **LEASE, **QUICK_STOP, "JOBS_LOG_FORMAT": "auto"},
        start_new_session=True,
    )
    os.close(worker_end)
    shown: list[str] = []

    def read() -> None:
        while True:
            try:
                data = os.read(terminal, 65536)
            except OSError:  # EIO: every writer of the terminal is gone
                return
            if not data:
                return
            shown.append(data.decode(errors="replace"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_for(lambda: "lease_acquired" in "".join(shown), what="the worker's lease on the terminal", timeout=30)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        reader.join(timeout=10)
        os.close(terminal)
    ours = [line for line in "".join(shown).splitlines() if "lease_acquired" in line or "workers_starting" in line]
    assert ours and not [line for line in ours if line.lstrip().startswith("{")], "console lines, not JSON"


def test_jobs_worker_restarts_as_itself_on_sighup(workers):
    process = workers(command=JOBS_WORKER)

    def count(event: str) -> int:
        return process.log_path.read_text().count(f'"event": "{event}"')

    wait_for(lambda: count("lease_acquired") == 1, what="the worker's lease", timeout=30)
    process.send_signal(signal.SIGHUP)
    # Once its worker holds a lease, the new main process handles signals (it blocks them before it forks).
    wait_for(lambda: count("lease_acquired") == 2, what="Dramatiq's CLI to exec jobs.worker again", timeout=30)
    assert count("workers_starting") == 2
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert all(json.loads(line) for line in process.log_path.read_text().splitlines())
