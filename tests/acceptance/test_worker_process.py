"""Real `dramatiq actors` worker processes, driven from outside through Redis and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from db.connection import database
from jobs import service
from tests.acceptance.conftest import QUICK_STOP
from tests.helpers import all_terminal, events, job_row, statuses, wait_for


@pytest.fixture
def worker_process(redis_broker, tmp_path):
    """Starts `dramatiq actors`; stops it with SIGTERM and checks that it exits cleanly."""
    log_path = tmp_path / "worker.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "dramatiq", "actors", "--processes", "1", "--threads", "4"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **QUICK_STOP, "JOBS_LOG_FORMAT": "json"},
        )
    process.log_path = log_path
    yield process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def json_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def test_dramatiq_worker_process_runs_every_kind_of_job(worker_process, tenants):
    user = tenants.globex.members[0]
    expected = {
        service.send_job("test_job", user_id=user): "completed",
        service.send_job("test_job", user_id=user, args={"should_fail": True}): "failed",
        service.send_job("test_job", user_id=user, args={"fail_attempts": 1}): "completed",
        service.send_job("test_job", user_id=user, args={"delay_ms": 300}, delay_ms=200): "completed",
        service.send_job("initialize", user_id=user, args={"course_id": tenants.globex.course}): "completed",
    }
    wait_for(all_terminal(list(expected)), what="the worker process to finish every job", timeout=30)
    assert statuses(list(expected)) == expected

    worker_process.send_signal(signal.SIGTERM)
    assert worker_process.wait(timeout=30) == 0

    lines = json_lines(worker_process.log_path)
    writes = [line for line in lines if line.get("logger") in ("middleware.sends", "middleware.status")]
    assert {w["event"] for w in writes} >= {"job_started", "job_completed", "job_failed", "job_retrying"}
    strays = [
        (w.get("event"), w.get("job_id"), w.get("write"))
        for w in writes
        if w.get("write") != "awaited" or w.get("job_id") not in expected
    ]
    assert strays == [], "every write line says write=awaited and names one of the jobs"
    assert any(line["logger"].startswith("dramatiq") for line in lines), "Dramatiq's own lines are JSON too"


def test_dramatiq_worker_process_honours_cancellations(worker_process, tenants):
    owner, admin = tenants.acme.members[0], tenants.acme.admin
    running = service.send_job("test_job", user_id=owner, args={"delay_ms": 30_000})
    delayed = service.send_job("test_job", user_id=owner, delay_ms=500)
    service.cancel_job(delayed, owner, reason="not needed")
    wait_for(lambda: job_row(running)["status"] == "active", what="the long job to start", timeout=30)

    assert service.cancel_job(running, admin, reason="stop it").interrupting
    wait_for(lambda: events(running)[-1][0] == "execution_stopped", what="the worker to stop the job", timeout=10)
    wait_for(lambda: events(delayed)[-1][0] == "delivery_skipped", what="the delayed job's delivery", timeout=10)

    assert statuses([running, delayed]) == {running: "cancelled", delayed: "cancelled"}
    assert [e[0] for e in events(running)].count("started") == 1, "never retried"
    assert "started" not in [e[0] for e in events(delayed)]


def test_a_worker_that_could_act_as_a_user_runs_no_job(workers, settings, tenants):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    refused = workers(env={"DATABASE_URL": settings.database_url, "JOBS_WORKER_MAY_ACT_AS_USERS": "0"})
    wait_for(lambda: refused.log_path.read_text().count('"event": "worker_refused"') >= 2, what="two refused beats")
    # No lease, so no job: the database starts none for a worker without one.
    assert database.execute_sql("SELECT count(*) FROM workers").fetchone()[0] == 0
    assert job_row(job_id)["status"] == "pending" and refused.poll() is None
