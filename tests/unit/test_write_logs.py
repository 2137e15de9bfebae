"""Every log line of a write says which kind it was."""

from __future__ import annotations

import logging

from jobs import service
from tests.unit.test_progress import writer_of


def fields(record: logging.LogRecord) -> dict:
    return record.msg if isinstance(record.msg, dict) else {"event": record.getMessage()}


def test_status_writes_are_logged_as_awaited_with_their_context(stub_broker, stub_worker, tenants, log_records):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0], args={"fail_attempts": 1, "delay_ms": 250})
    stub_broker.join("default")
    stub_worker.join()
    assert writer_of(stub_broker).flush(timeout=5)

    writes = [fields(r) for r in log_records if r.name in ("middleware.sends", "middleware.status")]
    assert [w["event"] for w in writes] == [
        "job_enqueued",
        "job_started",
        "job_retrying",
        "job_rescheduled",
        "job_started",
        "job_completed",
    ]
    assert all(w["write"] == "awaited" and w["job_id"] == job_id for w in writes)
    assert all(w["job_type"] == "test_job" and "attempt" in w for w in writes if w["event"] != "job_rescheduled")
    assert [w.get("transition") for w in writes if w["event"] != "job_rescheduled"] == [
        "-> pending",
        "pending -> active",
        "active -> retrying",
        "retrying -> active",
        "active -> completed",
    ]
    progress = [fields(r) for r in log_records if r.name == "middleware.progress"]
    assert progress and all(p["write"] == "fire_and_forget" for p in progress)
