"""The reaper: jobs of silent workers go back to the queue, within a delivery limit."""

from __future__ import annotations

import pytest

from db import transitions
from jobs import service
from jobs.config import ConfigurationError, Settings
from middleware.recovery import recover_lost_jobs
from tests.conftest import running
from tests.helpers import events, job_row


def start(job_id: str, worker: str) -> None:
    assert transitions.mark_active(job_id, worker).applied


def test_job_of_a_silent_worker_is_recovered_and_completes(stub_broker, tenants):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    # Take the message from the queue, as the lost worker had, and leave its job active.
    stub_broker.flush("default")
    start(job_id, "ghost:1:dead/Thread-1")

    reaped = recover_lost_jobs(stub_broker, window_s=0, max_deliveries=3)
    assert [(job.job_id, job.outcome) for job in reaped] == [(job_id, "retrying")]
    with running(stub_broker, threads=2) as worker:
        stub_broker.join("default")
        worker.join()

    job = job_row(job_id)
    assert (job["status"], job["attempts"], job["lost_deliveries"]) == ("completed", 2, 1)
    assert [e[0] for e in events(job_id)] == ["enqueued", "started", "worker_lost", "started", "completed"]


def test_job_of_a_live_worker_is_left_alone(stub_broker, tenants):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    transitions.heartbeat("alive:2:beat", "alive", 2)
    start(job_id, "alive:2:beat/Thread-3")

    assert recover_lost_jobs(stub_broker, window_s=10, max_deliveries=3) == []
    transitions.worker_stopped("alive:2:beat")
    assert recover_lost_jobs(stub_broker, window_s=0, max_deliveries=3)[0].job_id == job_id


def test_recently_started_job_is_not_taken_for_lost(stub_broker, tenants):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    start(job_id, "unknown:3:x/Thread-1")
    assert recover_lost_jobs(stub_broker, window_s=10, max_deliveries=3) == []
    assert job_row(job_id)["status"] == "active"


def test_job_that_keeps_losing_its_worker_fails_at_the_delivery_limit(stub_broker, tenants):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    start(job_id, "ghost:1:a/Thread-1")
    assert recover_lost_jobs(stub_broker, window_s=0, max_deliveries=2)[0].outcome == "retrying"
    start(job_id, "ghost:1:b/Thread-1")
    assert recover_lost_jobs(stub_broker, window_s=0, max_deliveries=2)[0].outcome == "failed"

    job = job_row(job_id)
    assert (job["status"], job["error_type"], job["lost_deliveries"]) == ("failed", "WorkerLost", 2)
    assert "2 deliveries lost: the limit" in job["error_message"]
    assert job["failed_at"] >= job["started_at"]


def test_finished_jobs_are_never_reaped(stub_broker, stub_worker, tenants):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    stub_broker.join("default")
    stub_worker.join()
    assert recover_lost_jobs(stub_broker, window_s=0, max_deliveries=3) == []
    assert job_row(job_id)["status"] == "completed"


def test_recovery_window_must_outlast_two_heartbeats():
    with pytest.raises(ConfigurationError, match="more than twice JOBS_HEARTBEAT_S"):
        Settings.from_env({"JOBS_HEARTBEAT_S": "5", "JOBS_RECOVERY_WINDOW_S": "10"})


def test_worker_does_not_run_a_job_whose_start_it_cannot_record(stub_broker, tenants, settings):
    from actors import test_job
    from db.connection import database
    from middleware import StatusMiddleware

    status = next(m for m in stub_broker.middleware if isinstance(m, StatusMiddleware))
    status.start_deadline_s = 0.3
    message = test_job.send_with_options(max_retries=0, job_owner={"user_id": tenants.acme.members[0]})
    database.close()
    database.init("postgresql://postgres@127.0.0.1:1/unreachable")
    try:
        with running(stub_broker, threads=1) as worker:
            stub_broker.join("default", fail_fast=False)
            worker.join()
    finally:
        database.close()
        database.init(settings.database_url)

    job = job_row(message.message_id)
    assert (job["status"], job["attempts"], job["started_at"]) == ("pending", 0, None)
    assert [e[0] for e in events(message.message_id)] == ["enqueued"]
    assert len(stub_broker.dead_letters) == 1, "the message failed instead of running unrecorded"
