"""The same lifecycle through the real Redis broker, with worker threads in this process."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from db.models import JobStatus
from jobs import service
from tests.helpers import all_terminal, broken_rows, events, job_row, out_of_order_events, statuses, wait_for


def test_race_of_the_old_system_500_fast_jobs(redis_broker, redis_worker, tenants, log_records):
    """Zero-delay jobs sent as fast as possible while 8 worker threads take them: each row exists
    when send() returns, each job completes, and nothing is out of order or logged as an error."""
    users = [*tenants.acme.members, *tenants.globex.members]

    def send_batch(user: str) -> list[str]:
        ids = []
        for _ in range(125):
            job_id = service.send_job("test_job", user_id=user)
            assert JobStatus.get_or_none(JobStatus.job_id == job_id) is not None, "row missing after send()"
            ids.append(job_id)
        return ids

    with ThreadPoolExecutor(max_workers=len(users)) as senders:
        job_ids = [job_id for batch in senders.map(send_batch, users) for job_id in batch]

    assert len(set(job_ids)) == 500
    wait_for(all_terminal(job_ids), what="500 jobs to finish", timeout=60)
    assert set(statuses(job_ids).values()) == {"completed"}
    assert out_of_order_events() == []
    assert broken_rows() == []
    errors = [r for r in log_records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors[:5]]


def test_delayed_job_waits_for_its_time_then_completes(redis_broker, redis_worker, tenants):
    from actors import test_job

    message = test_job.send_with_options(delay=1000, job_owner={"user_id": tenants.globex.admin})
    wait_for(all_terminal([message.message_id]), what="the delayed job to finish", timeout=10)

    job = job_row(message.message_id)
    assert job["status"] == "completed"
    assert job["started_at"].timestamp() * 1000 >= message.options["eta"]


def test_failing_and_retried_jobs_through_redis(redis_broker, redis_worker, tenants):
    user = tenants.acme.members[1]
    failing = service.send_job("test_job", user_id=user, args={"should_fail": True})
    retried = service.send_job("test_job", user_id=user, args={"fail_attempts": 2})
    initialize = service.send_job("initialize", user_id=user, args={"course_id": tenants.acme.course})
    wait_for(all_terminal([failing, retried, initialize]), what="three jobs to finish")

    assert statuses([failing, retried, initialize]) == {
        failing: "failed",
        retried: "completed",
        initialize: "completed",
    }
    assert "intentional" in job_row(failing)["error_message"]
    assert [e[0] for e in events(retried)].count("retry_scheduled") == 2
    assert job_row(retried)["attempts"] == 3


def test_redelivery_of_a_completed_job_is_skipped(redis_broker, redis_worker, tenants):
    from actors import test_job

    message = test_job.send_with_options(job_owner={"user_id": tenants.acme.admin})
    wait_for(all_terminal([message.message_id]), what="the job to finish")

    redis_broker.enqueue(message)
    wait_for(lambda: events(message.message_id)[-1][0] == "delivery_skipped", what="the redelivery to be skipped")
    job = job_row(message.message_id)
    assert (job["status"], job["attempts"]) == ("completed", 1)


def test_batch_published_in_one_pipeline_runs_every_job(redis_broker, redis_worker, tenants, monkeypatch):
    def one_by_one(*args, **kwargs):
        raise AssertionError("a batch on Redis is published through one pipeline, not enqueue by enqueue")

    monkeypatch.setattr(redis_broker, "enqueue", one_by_one)
    owner = tenants.globex.members[1]
    now = service.send_jobs("test_job", [{"delay_ms": n} for n in range(20)], user_id=owner)
    later = service.send_jobs("test_job", [{}, {}], user_id=owner, delay_ms=200)
    monkeypatch.undo()  # the worker's own enqueues (a delay coming due) are Dramatiq's

    wait_for(all_terminal(now + later), what="both batches to finish", timeout=30)
    assert statuses(now + later) == dict.fromkeys(now + later, "completed")
    for job_id in later:
        assert [e[0] for e in events(job_id)] == ["enqueued", "started", "completed"]
        row = job_row(job_id)
        assert (row["started_at"] - row["created_at"]).total_seconds() >= 0.2, "ran before its delay"
