"""A worker's log lines: one per outcome at the level it deserves, with the job's id and duration;
Dramatiq's duplicates dropped; arguments by name unless the actor says otherwise."""

from __future__ import annotations

import io
import json
import logging

import dramatiq

from jobs import service
from middleware.log_format import handler_for
from tests.helpers import events, job_row, wait_for


def fields(record: logging.LogRecord) -> dict:
    return dict(record.msg) if isinstance(record.msg, dict) else {"event": record.getMessage()}


def job_of(record: logging.LogRecord) -> str | None:
    return fields(record).get("job_id") or getattr(record, "job_id", None)


def loud(records: list[logging.LogRecord]) -> list[tuple[str, str, str | None]]:
    """Every line at WARNING or above: (level, event, job)."""
    return [(r.levelname, fields(r)["event"], job_of(r)) for r in records if r.levelno >= logging.WARNING]


def outcome(records: list[logging.LogRecord], job_id: str, event: str) -> dict:
    (line,) = [
        fields(r) | {"level": r.levelname}
        for r in records
        if fields(r).get("job_id") == job_id and fields(r)["event"] == event
    ]
    return line


def finish(broker, worker) -> None:
    broker.join("default", fail_fast=False)
    worker.join()


def test_a_job_that_fails_for_good_is_one_error_line(stub_broker, stub_worker, tenants, log_records):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0], args={"should_fail": True})
    finish(stub_broker, stub_worker)

    assert loud(log_records) == [("ERROR", "job_failed", job_id)], "no Dramatiq line says it again"
    failed = outcome(log_records, job_id, "job_failed")
    assert (failed["job_type"], failed["error_type"], failed["error"]) == (
        "test_job",
        "IntentionalFailure",
        "intentional failure (should_fail=True)",
    )
    assert isinstance(failed["duration_ms"], int) and failed["duration_ms"] >= 0


def test_a_retried_failure_is_one_warning_line_and_exhausted_retries_one_error(
    stub_broker, stub_worker, tenants, log_records
):
    user = tenants.acme.members[0]
    retried = service.send_job("test_job", user_id=user, args={"fail_attempts": 1})
    exhausted = service.send_job("test_job", user_id=user, args={"fail_attempts": 9})  # 3 retries (the default)
    finish(stub_broker, stub_worker)

    assert sorted(loud(log_records)) == sorted(
        [
            ("WARNING", "job_retrying", retried),
            *[("WARNING", "job_retrying", exhausted)] * 3,
            ("ERROR", "job_failed", exhausted),
        ]
    )
    assert outcome(log_records, retried, "job_completed")["level"] == "INFO"
    dramatiq_retries = [r.getMessage() for r in log_records if r.name.startswith("dramatiq.middleware.retries")]
    assert dramatiq_retries == [], "Retries' lines repeat job_retrying and job_failed"


def test_a_cancelled_running_job_is_one_info_line(stub_broker, stub_worker, tenants, log_records):
    owner = tenants.globex.members[0]
    job_id = service.send_job("test_job", user_id=owner, args={"delay_ms": 30_000})
    wait_for(lambda: job_row(job_id)["status"] == "active", what="the job to start")
    service.cancel_job(job_id, owner, reason="not needed")
    wait_for(lambda: events(job_id)[-1][0] == "execution_stopped", what="the running job to stop", timeout=5)
    finish(stub_broker, stub_worker)

    assert loud(log_records) == [], "a user's cancellation pages nobody"
    cancelled = outcome(log_records, job_id, "job_cancelled")
    assert (cancelled["level"], cancelled["how"], cancelled["transition"]) == ("INFO", "Abort", "active -> cancelled")
    assert cancelled["duration_ms"] >= 0
    lines_of_job = [fields(r)["event"] for r in log_records if job_of(r) == job_id and r.levelno >= logging.INFO]
    assert lines_of_job.count("job_cancelled") == 1 and not any("Abort" in e for e in lines_of_job)
    assert not [r for r in log_records if "Aborting task" in r.getMessage()]


def test_completed_and_failed_lines_carry_the_run_duration(stub_broker, stub_worker, tenants, log_records):
    user = tenants.acme.members[1]
    slow = service.send_job("test_job", user_id=user, args={"delay_ms": 200})
    failed = service.send_job("test_job", user_id=user, args={"delay_ms": 100, "should_fail": True})
    finish(stub_broker, stub_worker)

    assert outcome(log_records, slow, "job_completed")["duration_ms"] >= 200
    assert outcome(log_records, failed, "job_failed")["duration_ms"] >= 100


def test_arguments_are_logged_by_name_and_dramatiq_lines_name_their_job(stub_broker, stub_worker, tenants, log_records):
    job_id = service.send_job(
        "test_job", user_id=tenants.acme.members[0], args={"delay_ms": 7, "check_cancellation": True}
    )
    finish(stub_broker, stub_worker)

    assert outcome(log_records, job_id, "job_started")["arguments"] == ["delay_ms", "check_cancellation"]
    (received,) = [r for r in log_records if r.getMessage().startswith("Received message")]
    assert received.getMessage() == f"Received message test_job(delay_ms, check_cancellation) with id '{job_id}'."
    assert received.job_id == job_id
    messages = [r.getMessage() for r in log_records]
    assert "Received test_job(delay_ms, check_cancellation)." in messages, "the actor's own line, by name too"
    (pushed,) = [r for r in log_records if r.getMessage().startswith("Pushing message")]
    assert pushed.job_id == job_id
    everything = " ".join(str(fields(r)) + r.getMessage() for r in log_records)
    assert "delay_ms=7" not in everything and "'delay_ms': 7" not in everything

    rendered = io.StringIO()
    handler_for("json", rendered).handle(received)
    assert json.loads(rendered.getvalue())["job_id"] == job_id, "the job's id reaches the rendered line"


def test_an_actor_may_ask_for_its_argument_values_to_be_logged(stub_broker, stub_worker, tenants, log_records):
    def echo(text: str) -> str:
        return text

    actor = dramatiq.actor(echo, broker=stub_broker, actor_name="echo_logged", log_arguments=True)
    message = actor.send_with_options(kwargs={"text": "hello"}, job_owner={"user_id": tenants.acme.members[0]})
    finish(stub_broker, stub_worker)

    assert outcome(log_records, message.message_id, "job_started")["arguments"] == {"text": "hello"}
    assert f"Received message echo_logged(text='hello') with id '{message.message_id}'." in [
        r.getMessage() for r in log_records
    ]


def test_a_batch_send_is_one_line_with_its_count_and_ends(stub_broker, tenants, log_records):
    ids = service.send_jobs("test_job", [{}] * 500, user_id=tenants.acme.members[0])

    (line,) = [r for r in log_records if fields(r)["event"] == "jobs_enqueued"]
    assert line.levelno == logging.INFO
    assert (fields(line)["count"], fields(line)["first_job_id"], fields(line)["last_job_id"]) == (500, ids[0], ids[-1])
    rendered = io.StringIO()
    handler_for("json", rendered).handle(line)
    assert len(rendered.getvalue()) < 1000
    (listed,) = [r for r in log_records if fields(r)["event"] == "jobs_enqueued_ids"]
    assert (listed.levelno, fields(listed)["job_ids"]) == (logging.DEBUG, ids)
