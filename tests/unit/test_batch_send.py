"""A batch send: every pending row committed in one round trip before any message is published,
with the guarantees of a single send for the batch as a whole."""

from __future__ import annotations

import json

import pytest

from db.connection import database
from jobs import service
from jobs.errors import InvalidArguments, JobNotRecorded, UnknownCourse, UnknownJobType, UnknownUser
from tests.conftest import UNREACHABLE_URL
from tests.helpers import count, events, job_row, statuses
from tests.support.cli import jobctl


@pytest.fixture
def published(stub_broker, monkeypatch):
    """Records, at each publish, how many pending rows were committed (seen from another connection)."""
    seen: list[int] = []
    enqueue = stub_broker.enqueue

    def counting(message, *, delay=None):
        seen.append(count_committed())
        return enqueue(message, delay=delay)

    monkeypatch.setattr(stub_broker, "enqueue", counting)
    return seen


def count_committed() -> int:
    # The worker's thread-local connection is this thread's: read from a fresh thread instead.
    from concurrent.futures import ThreadPoolExecutor

    def read() -> int:
        try:
            return count("job_status")
        finally:
            database.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(read).result()


def test_batch_is_recorded_whole_before_any_message_is_published(tenants, stub_broker, stub_worker, published):
    user = tenants.acme.members[0]
    ids = service.send_jobs("test_job", [{"delay_ms": n} for n in range(5)], user_id=user)

    assert published == [5] * 5
    assert len(set(ids)) == 5
    stub_broker.join("default")
    stub_worker.join()
    assert statuses(ids) == dict.fromkeys(ids, "completed")
    assert [job_row(job_id)["kwargs"]["delay_ms"] for job_id in ids] == list(range(5))
    assert all(events(job_id)[0][:3] == ("enqueued", None, "pending") for job_id in ids)


@pytest.mark.parametrize(
    ("jobs", "error", "message"),
    [
        ([{}, {"delay_ms": -1}, {}], InvalidArguments, "delay_ms must be from 0"),
        ([{}, "oops"], InvalidArguments, "must be an object of named values"),
        ([{}, {"colour": "red"}], InvalidArguments, "unexpected keyword argument 'colour'"),
    ],
)
def test_one_bad_job_refuses_the_whole_batch(tenants, stub_broker, published, jobs, error, message):
    with pytest.raises(error, match=message):
        service.send_jobs("test_job", jobs, user_id=tenants.acme.members[0])
    assert (count("job_status"), count("job_events"), published) == (0, 0, [])


def test_a_refusal_by_the_database_refuses_the_whole_batch(tenants, stub_broker, published):
    own, foreign = tenants.acme.course, tenants.globex.course
    with pytest.raises(UnknownCourse, match=f"course {foreign} does not exist"):
        service.send_jobs("initialize", [{"course_id": own}, {"course_id": foreign}], user_id=tenants.acme.admin)
    with pytest.raises(UnknownUser):
        service.send_jobs("test_job", [{}], user_id="00000000-0000-4000-8000-000000000000")
    with pytest.raises(UnknownJobType):
        service.send_jobs("no_such_job", [{}], user_id=tenants.acme.admin)
    assert (count("job_status"), count("job_events"), published) == (0, 0, [])


def test_batch_send_fails_loudly_when_the_database_is_unreachable(tenants, stub_broker, published, database_at):
    with database_at(UNREACHABLE_URL), pytest.raises(JobNotRecorded, match="2 test_job jobs were not sent"):
        service.send_jobs("test_job", [{}, {}], user_id=tenants.acme.members[0])
    assert (count("job_status"), published) == (0, [])


def test_delayed_batch_waits_then_runs_without_a_second_write(tenants, stub_broker, stub_worker, log_records):
    ids = service.send_jobs("test_job", [{}, {}], user_id=tenants.globex.members[0], delay_ms=50)
    assert all(job_row(job_id)["scheduled_for"] is not None for job_id in ids)
    stub_broker.join("default")
    stub_worker.join()
    assert statuses(ids) == dict.fromkeys(ids, "completed")
    # Recorded once, at the send; the delay coming due is the same job, not a new one.
    assert all([e[0] for e in events(job_id)] == ["enqueued", "started", "completed"] for job_id in ids)
    pending_writes = [
        r.msg["event"]
        for r in log_records
        if r.name == "middleware.sends"
        and isinstance(r.msg, dict)
        and r.msg["event"] in ("job_enqueued", "jobs_enqueued", "job_rescheduled")
    ]
    assert pending_writes == ["jobs_enqueued"], "the batch's publish wrote its rows again"


def test_jobctl_send_count_sends_one_batch(tenants):
    sent = jobctl("--log-level", "INFO", "send", "test_job", "--as", "bob@acme.example", "--count", "3", "--json")
    assert sent.returncode == 0, sent.stderr
    ids = json.loads(sent.stdout)
    assert statuses(ids) == dict.fromkeys(ids, "pending")
    assert sent.stderr.count("jobs_enqueued") == 1 and "job_enqueued" not in sent.stderr
