"""Progress: fire-and-forget writes that never slow, fail or overwrite a job."""

from __future__ import annotations

import logging

import pytest

from db import transitions
from jobs import service
from middleware import ProgressMiddleware, ProgressWriter
from tests.helpers import alive, job_row, wait_for


def writer_of(broker) -> ProgressWriter:
    return next(m.writer for m in broker.middleware if isinstance(m, ProgressMiddleware))


def fields(record: logging.LogRecord) -> dict:
    return record.msg if isinstance(record.msg, dict) else {"event": record.getMessage()}


def test_running_job_reports_progress(stub_broker, stub_worker, tenants):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0], args={"delay_ms": 600})

    seen = wait_for(
        lambda: (job := job_row(job_id))["status"] == "active" and 0 < job["progress"] < 100 and job,
        what="progress of the running job",
    )
    assert "waited" in seen["progress_message"]
    stub_broker.join("default")
    stub_worker.join()
    assert job_row(job_id)["progress"] == 100


def test_progress_never_lands_on_a_finished_job(tenants, stub_broker):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    alive("w")
    assert transitions.mark_active(job_id, "w").applied
    assert transitions.mark_failed(job_id, 1, "w", transitions.Failure("E", "boom", "")).applied

    writer = ProgressWriter()
    writer.submit(job_id, 1, 40, "late")
    assert writer.close(timeout=5)
    job = job_row(job_id)
    assert (job["progress"], job["progress_message"]) == (0, None)


def test_progress_of_an_earlier_attempt_is_ignored(tenants, stub_broker):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    alive("w")
    assert transitions.mark_active(job_id, "w").applied
    assert transitions.mark_retrying(job_id, 1, "w", transitions.Failure("E", "boom", "")).applied
    assert transitions.mark_active(job_id, "w").applied

    writer = ProgressWriter()
    writer.submit(job_id, 1, 90, "from attempt 1")
    assert writer.flush(timeout=5)
    assert job_row(job_id)["progress"] == 0
    writer.submit(job_id, 2, 10, "from attempt 2")
    assert writer.close(timeout=5)
    assert job_row(job_id)["progress"] == 10


def test_newest_waiting_report_of_a_job_supersedes_the_older(tenants, stub_broker, log_records):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    alive("w")
    assert transitions.mark_active(job_id, "w").applied

    writer = ProgressWriter()
    with writer._cond:  # hold the writer so that all three wait together
        for percent in (10, 20, 30):
            writer.submit(job_id, 1, percent, f"at {percent}")
    assert writer.close(timeout=5)
    job = job_row(job_id)
    assert (job["progress"], job["progress_message"]) == (30, "at 30")
    written = [fields(r) for r in log_records if fields(r)["event"] == "progress_written"]
    assert [(w["job_id"], w["progress"]) for w in written] == [(job_id, 30)], "one write for the three reports"


def test_full_writer_drops_and_says_so(tenants, stub_broker, log_records):
    writer = ProgressWriter(capacity=1)
    with writer._cond:  # hold the writer so both reports wait at once
        assert writer.submit("00000000-0000-0000-0000-000000000001", 1, 5, None)
        assert not writer.submit("00000000-0000-0000-0000-000000000002", 1, 5, None)
    assert writer.close(timeout=5)
    dropped = [fields(r) for r in log_records if fields(r)["event"] == "progress_dropped"]
    assert dropped and dropped[0]["write"] == "fire_and_forget"


def test_failed_progress_write_is_logged_not_raised(tenants, stub_broker, log_records):
    writer = ProgressWriter()
    writer.submit("not-a-uuid", 1, 5, None)
    assert writer.close(timeout=5)
    failed = [fields(r) for r in log_records if fields(r)["event"] == "progress_write_failed"]
    assert failed and failed[0]["write"] == "fire_and_forget" and failed[0]["job_id"] == "not-a-uuid"


def test_progress_outside_a_job_or_out_of_range_is_an_error():
    from middleware import report_progress
    from middleware.context import NotInAJob

    with pytest.raises(NotInAJob):
        report_progress(10)
    with pytest.raises(ValueError, match="from 0 to 100"):
        report_progress(101)


def test_worker_shutdown_flushes_waiting_progress(tenants, stub_broker):
    from dramatiq import Worker

    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    alive("w")
    assert transitions.mark_active(job_id, "w").applied
    worker = Worker(stub_broker, worker_threads=1, worker_timeout=50)
    worker.start()
    writer = writer_of(stub_broker)
    with writer._cond:
        writer.submit(job_id, 1, 70, "before shutdown")
    worker.stop()
    assert job_row(job_id)["progress"] == 70
