"""Leases and the reaper: a job is taken back only once its worker's lease has run out, and a
worker without a live lease starts nothing."""

from __future__ import annotations

import pytest

from db import transitions
from db.connection import database
from jobs import service
from middleware.reaper import recover_lost_jobs
from middleware.settings import ConfigurationError, Settings
from tests.conftest import UNREACHABLE_URL, running
from tests.helpers import alive, events, expire_lease, job_row, wait_for, worker_limits


def start(job_id: str, worker: str) -> None:
    alive(worker)
    assert transitions.mark_active(job_id, worker).applied


def test_job_of_a_worker_whose_lease_ran_out_is_recovered_and_completes(stub_broker, tenants):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    # Take the message from the queue, as the lost worker had, and leave its job active.
    stub_broker.flush("default")
    start(job_id, "ghost:1:dead/Thread-1")
    assert recover_lost_jobs(stub_broker, window_s=0) == [], "its lease still runs"

    expire_lease("ghost:1:dead")
    reaped = recover_lost_jobs(stub_broker, window_s=0)
    assert [(job.job_id, job.outcome) for job in reaped] == [(job_id, "retrying")]
    with running(stub_broker, threads=2) as worker:
        stub_broker.join("default")
        worker.join()

    job = job_row(job_id)
    assert (job["status"], job["attempts"], job["lost_deliveries"]) == ("completed", 2, 1)
    assert [e[0] for e in events(job_id)] == ["enqueued", "started", "worker_lost", "started", "completed"]
    lost = database.execute_sql(
        "SELECT worker_id, details FROM job_events WHERE job_id = %s::uuid AND event = 'worker_lost'", (job_id,)
    ).fetchone()
    assert lost == (None, {"lost_worker": "ghost:1:dead/Thread-1", "lost_deliveries": 1}), "written by the reaper"


def test_stopped_worker_releases_its_lease_only_when_it_runs_nothing(stub_broker, tenants):
    held, released = (service.send_job("test_job", user_id=tenants.acme.members[0]) for _ in range(2))
    start(held, "busy:2:beat/Thread-3")
    start(released, "idle:3:beat/Thread-1")

    transitions.worker_stopped("busy:2:beat", release=False)  # a thread still ran a job
    transitions.worker_stopped("idle:3:beat", release=True)
    assert [job.job_id for job in recover_lost_jobs(stub_broker, window_s=0)] == [released]
    expire_lease("busy:2:beat")
    assert [job.job_id for job in recover_lost_jobs(stub_broker, window_s=0)] == [held]


def test_worker_without_a_live_lease_cannot_start_a_job(stub_broker, tenants):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    refused = transitions.mark_active(job_id, "never:4:seen/Thread-1")
    assert (refused.outcome, refused.status) == ("no_lease", "pending")
    alive("late:5:x")
    expire_lease("late:5:x")
    assert transitions.mark_active(job_id, "late:5:x/Thread-1").outcome == "no_lease"
    rejections = database.execute_sql(
        "SELECT details->>'why' FROM job_events WHERE job_id = %s::uuid AND event = 'transition_rejected'", (job_id,)
    ).fetchall()
    assert rejections == [("the worker holds no live lease",)] * 2
    assert job_row(job_id)["status"] == "pending"


def test_job_of_a_worker_never_recorded_is_taken_after_the_window(stub_broker, tenants, admin_db):
    # Active rows from before leases (or written by hand) have no worker row: the database's
    # longest lease judges, whatever window the caller has.
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    start(job_id, "old:6:x/Thread-1")
    with admin_db.cursor() as cursor:
        cursor.execute("DELETE FROM workers WHERE worker_id = 'old:6:x'")
    assert recover_lost_jobs(stub_broker, window_s=0) == [], "within the database's 30 s"
    worker_limits(max_lease_ms=1)
    assert recover_lost_jobs(stub_broker, window_s=60)[0].job_id == job_id


def test_job_that_keeps_losing_its_worker_fails_at_the_delivery_limit(stub_broker, tenants):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    worker_limits(max_deliveries=2)
    start(job_id, "ghost:1:a/Thread-1")
    expire_lease("ghost:1:a")
    assert recover_lost_jobs(stub_broker, window_s=0)[0].outcome == "retrying"
    start(job_id, "ghost:1:b/Thread-1")
    expire_lease("ghost:1:b")
    assert recover_lost_jobs(stub_broker, window_s=0)[0].outcome == "failed"

    job = job_row(job_id)
    assert (job["status"], job["error_type"], job["lost_deliveries"]) == ("failed", "WorkerLost", 2)
    assert "2 deliveries lost: the limit" in job["error_message"]
    assert job["failed_at"] >= job["started_at"]


def test_finished_jobs_are_never_reaped(stub_broker, stub_worker, tenants):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    stub_broker.join("default")
    stub_worker.join()
    assert recover_lost_jobs(stub_broker, window_s=0) == []
    assert job_row(job_id)["status"] == "completed"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"JOBS_HEARTBEAT_S": "5", "JOBS_RECOVERY_WINDOW_S": "14", "JOBS_LEASE_MARGIN_S": "5"}, "more than twice"),
        ({"JOBS_LEASE_MARGIN_S": "0"}, "must be more than 0"),
        ({"JOBS_DB_LOCK_TIMEOUT_MS": "0"}, "JOBS_DB_LOCK_TIMEOUT_MS must be 1 or more"),
    ],
)
def test_lease_and_limits_must_make_sense(env, message):
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env(env)


def test_worker_without_a_lease_runs_nothing_and_hands_its_messages_back(
    stub_broker, tenants, database_at, log_records, monkeypatch
):
    """The database is unreachable from the worker's boot: it never records a heartbeat, so it
    starts nothing; when it stops, the message it held goes back to the broker, unchanged."""
    from actors import test_job

    message = test_job.send_with_options(max_retries=7, job_owner={"user_id": tenants.acme.members[0]})
    # StubBroker drops what its consumers hold when a worker stops (Redis puts it back): keep
    # what is handed back, to deliver it again below.
    handed_back = []
    monkeypatch.setattr(stub_broker, "enqueue", lambda message, *, delay=None: handed_back.append((message, delay)))
    with database_at(UNREACHABLE_URL), running(stub_broker, threads=1, leased=False):
        wait_for(
            lambda: any(_event(r) == "start_postponed" for r in log_records), what="the delivery to wait for a lease"
        )
        assert any(_event(r) == "heartbeat_failed" for r in log_records)
    monkeypatch.undo()

    job = job_row(message.message_id)
    assert (job["status"], job["attempts"], job["started_at"]) == ("pending", 0, None)
    assert [e[0] for e in events(message.message_id)] == ["enqueued"]
    assert stub_broker.dead_letters == []
    ((again, delay),) = handed_back
    assert (again.message_id, again.options["max_retries"], delay) == (message.message_id, 7, None)
    assert "retries" not in again.options, "no retry counted: the job never ran"

    stub_broker.enqueue(again)
    with running(stub_broker, threads=1) as worker:
        stub_broker.join("default")
        worker.join()
    assert job_row(message.message_id)["status"] == "completed"


def test_a_worker_counts_the_lease_the_database_gives_when_it_is_shorter(stub_broker, tenants, log_records):
    from middleware import LeaseKeeper
    from middleware.lease import clock

    worker_limits(max_lease_ms=25_000)  # below the suite's JOBS_RECOVERY_WINDOW_S, 30 s
    lease = next(m for m in stub_broker.middleware if isinstance(m, LeaseKeeper)).lease
    with running(stub_broker, threads=1):
        assert 0 < lease.ends_at() - clock() <= 25.0
    (said,) = [r.msg for r in log_records if _event(r) == "lease_shortened"]
    assert (said["asked_ms"], said["given_ms"], said["level"]) == (30_000, 25_000, "warning")


def _event(record) -> str | None:
    return record.msg.get("event") if isinstance(record.msg, dict) else None
