"""The lifecycle of a job, persisted by the status middleware (StubBroker, real PostgreSQL)."""

from __future__ import annotations

from db.models import Course, CourseModule
from jobs import service
from tests.conftest import running
from tests.helpers import alive, broken_rows, events, job_row, out_of_order_events, statuses


def run_all(broker, worker) -> None:
    broker.join("default", fail_fast=False)
    worker.join()


def test_test_job_completes(stub_broker, stub_worker, tenants):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    run_all(stub_broker, stub_worker)

    job = job_row(job_id)
    assert job["status"] == "completed"
    assert job["attempts"] == 1
    assert job["progress"] == 100
    assert job["result"] == {"waited_ms": 0, "attempt": 1}
    assert job["organization_id"].hex == tenants.acme.id.replace("-", "")
    assert job["created_at"] <= job["started_at"] <= job["completed_at"]
    assert [e[:3] for e in events(job_id)] == [
        ("enqueued", None, "pending"),
        ("started", "pending", "active"),
        ("completed", "active", "completed"),
    ]


def test_initialize_completes_and_initializes_the_course(stub_broker, stub_worker, tenants):
    course = tenants.acme.course
    job_id = service.send_job("initialize", user_id=tenants.acme.members[0], args={"course_id": course})
    run_all(stub_broker, stub_worker)

    job = job_row(job_id)
    assert job["status"] == "completed", job["error_message"]
    assert str(job["course_id"]) == course
    assert job["result"]["modules"] == 5
    stored = Course.get_by_id(course)
    assert stored.status == "initialized"
    assert stored.initialized_at is not None
    assert [m.position for m in CourseModule.select().where(CourseModule.course == course)] == [1, 2, 3, 4, 5]


def test_delayed_job_does_not_start_before_it_is_due(stub_broker, stub_worker, tenants):
    from actors import test_job

    message = test_job.send_with_options(delay=1000, job_owner={"user_id": tenants.acme.members[0]})
    pending = job_row(message.message_id)
    assert pending["status"] == "pending"
    assert (pending["scheduled_for"] - pending["created_at"]).total_seconds() == 1.0
    run_all(stub_broker, stub_worker)

    job = job_row(message.message_id)
    assert job["status"] == "completed"
    assert job["scheduled_for"] is None
    # The eta is on this machine's clock, as is the database's.
    assert job["started_at"].timestamp() * 1000 >= message.options["eta"]


def test_failing_job_ends_failed_with_its_error(stub_broker, stub_worker, tenants):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0], args={"should_fail": True})
    run_all(stub_broker, stub_worker)

    job = job_row(job_id)
    assert job["status"] == "failed"
    assert "intentional" in job["error_message"]
    assert job["error_type"] == "IntentionalFailure"
    assert "Traceback" in job["error_stack"] and "test_job.py" in job["error_stack"]
    assert job["attempts"] == 1, "should_fail is not retried"
    assert job["failed_at"] >= job["started_at"]
    assert job["completed_at"] is None


def test_job_failing_twice_completes_on_its_third_attempt(stub_broker, stub_worker, tenants):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0], args={"fail_attempts": 2})
    run_all(stub_broker, stub_worker)

    job = job_row(job_id)
    assert job["status"] == "completed"
    assert job["attempts"] == 3
    assert job["error_message"] is None, "a completed job carries no error"
    assert [e[:4] for e in events(job_id)] == [
        ("enqueued", None, "pending", 0),
        ("started", "pending", "active", 1),
        ("retry_scheduled", "active", "retrying", 1),
        ("started", "retrying", "active", 2),
        ("retry_scheduled", "active", "retrying", 2),
        ("started", "retrying", "active", 3),
        ("completed", "active", "completed", 3),
    ]


def test_job_that_exhausts_its_retries_ends_failed(stub_broker, stub_worker, tenants, settings):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0], args={"fail_attempts": 99})
    run_all(stub_broker, stub_worker)

    job = job_row(job_id)
    assert job["status"] == "failed"
    assert job["attempts"] == job["max_attempts"] == settings.max_retries + 1
    assert "intentional failure of attempt 4" in job["error_message"]
    assert [e[0] for e in events(job_id)].count("retry_scheduled") == settings.max_retries


def test_redelivered_message_of_a_completed_job_is_skipped(stub_broker, stub_worker, tenants):
    from actors import test_job

    message = test_job.send_with_options(job_owner={"user_id": tenants.acme.members[0]})
    run_all(stub_broker, stub_worker)
    before = job_row(message.message_id)

    stub_broker.enqueue(message)  # the broker delivering it again, as at-least-once allows
    run_all(stub_broker, stub_worker)

    after = job_row(message.message_id)
    assert after == before
    assert events(message.message_id)[-1] == ("delivery_skipped", "completed", None, 1)


def test_second_delivery_of_a_running_job_is_refused(stub_broker, tenants):
    from actors import test_job
    from db import transitions

    message = test_job.send_with_options(job_owner={"user_id": tenants.acme.members[0]})
    # Another worker holds it: the row is active when this delivery arrives.
    alive("elsewhere")
    assert transitions.mark_active(message.message_id, "elsewhere").applied
    with running(stub_broker, threads=1) as worker:
        run_all(stub_broker, worker)

    job = job_row(message.message_id)
    assert (job["status"], job["worker_id"], job["attempts"]) == ("active", "elsewhere", 1)
    assert events(message.message_id)[-1] == ("transition_rejected", "active", None, 1)


def test_late_finish_of_an_earlier_attempt_is_refused(tenants, stub_broker):
    from db import transitions

    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    alive("w1", "w2")
    assert transitions.mark_active(job_id, "w1").applied
    failure = transitions.Failure("E", "boom", "")
    assert transitions.mark_retrying(job_id, 1, "w1", failure).applied
    assert transitions.mark_active(job_id, "w2").attempts == 2

    late = transitions.mark_completed(job_id, 1, "w1", {"late": True})
    assert (late.outcome, late.status) == ("rejected", "active")
    assert transitions.mark_completed(job_id, 2, "w2", None).applied
    assert transitions.mark_failed(job_id, 2, "w2", failure).outcome == "terminal"
    assert job_row(job_id)["status"] == "completed"


def test_repeated_write_after_a_lost_reply_is_recognised(tenants, stub_broker):
    from db import transitions

    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    alive("w1")
    assert transitions.mark_active(job_id, "w1").applied
    assert transitions.mark_active(job_id, "w1").applied, "the same worker asking again"
    assert transitions.mark_completed(job_id, 1, "w1", None).applied
    assert transitions.mark_completed(job_id, 1, "w1", None).applied
    assert [e[0] for e in events(job_id)] == ["enqueued", "started", "completed"]


def test_every_row_and_event_is_consistent_after_a_mixed_run(stub_broker, stub_worker, tenants):
    user = tenants.globex.members[1]
    sent = {
        service.send_job("test_job", user_id=user, args=args): expected
        for args, expected in (
            ({}, "completed"),
            ({"should_fail": True}, "failed"),
            ({"fail_attempts": 1}, "completed"),
            ({"delay_ms": 30}, "completed"),
            ({"fail_attempts": 9}, "failed"),
        )
    }
    sent[service.send_job("initialize", user_id=user, args={"course_id": tenants.globex.course})] = "completed"
    run_all(stub_broker, stub_worker)

    assert statuses(list(sent)) == sent
    assert out_of_order_events() == []
    assert broken_rows() == []
