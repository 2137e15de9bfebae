"""Real worker processes killed with SIGKILL: their jobs are recovered, never lost or stuck."""

from __future__ import annotations

import os
import signal

from db.connection import database
from jobs import service
from middleware.reaper import recover_lost_jobs
from tests.acceptance.conftest import HEARTBEAT_S, WINDOW_S, holder_pid, worker_row
from tests.helpers import events, job_row, wait_for, worker_limits

# A pass of the reaper may come late on a loaded machine; without leases it came minutes late.
SLACK_S = 2.0


def test_job_of_a_killed_worker_completes_on_another_worker(workers, tenants):
    first, second = workers(), workers()
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0], args={"delay_ms": 2000})
    wait_for(lambda: job_row(job_id)["status"] == "active", what="the job to start", timeout=30)

    victim, holder = holder_pid(job_id), job_row(job_id)["worker_process"]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: job_row(job_id)["status"] == "completed", what="recovery and completion", timeout=20)
    lost_at = database.execute_sql(
        "SELECT created_at FROM job_events WHERE job_id = %s::uuid AND event = 'worker_lost'", (job_id,)
    ).fetchone()[0]
    # Never before the victim's lease ran out; found by the next pass of the other's reaper.
    expired = worker_row(holder)["lease_expires_at"]
    assert expired <= lost_at
    assert (lost_at - expired).total_seconds() <= HEARTBEAT_S + SLACK_S

    job = job_row(job_id)
    assert (job["attempts"], job["lost_deliveries"]) == (2, 1)
    assert holder_pid(job_id) != victim
    names = [e[0] for e in events(job_id)]
    assert names == ["enqueued", "started", "worker_lost", "started", "completed"]
    assert sum(p.poll() is None for p in (first, second)) == 1, "exactly the victim's dramatiq exited"


def test_job_that_kills_its_worker_every_time_fails_after_the_delivery_limit(
    workers, tenants, redis_broker, monkeypatch
):
    monkeypatch.setenv("JOBS_ALLOW_FAULT_INJECTION", "1")
    worker_limits(max_deliveries=2)  # the database's rule, as `jobctl migrate` records it
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0], args={"kill_worker": True})
    for delivery in (1, 2):
        process = workers()
        assert process.wait(timeout=30) != 0, f"delivery {delivery} killed its worker"
    # The second worker died too: nobody is left to reap, so do it here, as `jobctl reap` would.
    wait_for(
        lambda: recover_lost_jobs(redis_broker, window_s=WINDOW_S),
        what="the job of the dead workers to be reaped",
        timeout=10,
    )

    job = job_row(job_id)
    assert (job["status"], job["error_type"], job["lost_deliveries"]) == ("failed", "WorkerLost", 2)
    assert [e[0] for e in events(job_id)] == ["enqueued", "started", "worker_lost", "started", "failed"]


def test_sigterm_during_a_job_lets_it_finish_and_says_the_worker_stopped(workers, tenants):
    process = workers()
    job_id = service.send_job("test_job", user_id=tenants.acme.members[1], args={"delay_ms": 1500})
    wait_for(lambda: job_row(job_id)["status"] == "active", what="the job to start", timeout=30)
    holder = job_row(job_id)["worker_process"]

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    job = job_row(job_id)
    assert (job["status"], job["progress"], job["attempts"]) == ("completed", 100, 1)
    stopped_at = database.execute_sql("SELECT stopped_at FROM workers WHERE worker_id = %s", (holder,)).fetchone()[0]
    assert stopped_at is not None and stopped_at >= job["completed_at"]


def test_crash_between_the_completed_write_and_the_ack_leaves_completed(workers, tenants, monkeypatch):
    from actors import test_job

    # A short broker heartbeat and maintenance on every command, so that the broker itself
    # requeues the dead worker's unacknowledged message within the test.
    broker_recovery = {"JOBS_BROKER_HEARTBEAT_TIMEOUT_MS": "3000", "JOBS_BROKER_MAINTENANCE_CHANCE": "1000000"}
    for name, value in {**broker_recovery, "JOBS_ALLOW_FAULT_INJECTION": "1"}.items():
        monkeypatch.setenv(name, value)
    message = test_job.send_with_options(job_owner={"user_id": tenants.acme.admin}, crash_before_ack=True)
    assert workers().wait(timeout=30) != 0, "the worker crashed after recording the end"
    job = job_row(message.message_id)
    assert (job["status"], job["attempts"]) == ("completed", 1)

    workers()  # its maintenance requeues the dead worker's message, which is delivered again
    wait_for(
        lambda: events(message.message_id)[-1][0] == "delivery_skipped",
        what="the redelivered message to be skipped",
        timeout=20,
    )
    after = job_row(message.message_id)
    assert after == job
    assert [e[0] for e in events(message.message_id)] == ["enqueued", "started", "completed", "delivery_skipped"]
