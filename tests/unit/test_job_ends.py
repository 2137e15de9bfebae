"""A job's end is always written, or its message is not acknowledged: whatever the job returned
or raised, whatever the database refuses, and however long the write waits."""

from __future__ import annotations

import threading

import dramatiq
import peewee
import pytest

from db import transitions
from jobs import service
from jobs.errors import InvalidArguments
from tests.conftest import running
from tests.helpers import count, events, job_row, wait_for, waiting_on_locks


@pytest.fixture
def jobs_of(stub_broker, tenants):
    """Declares a job on the test's broker; `jobs_of(fn, **options)` returns a sender."""

    def declare(fn, **options):
        actor = dramatiq.actor(fn, broker=stub_broker, max_retries=0, **options)

        def send(*args, **send_options) -> str:
            return actor.send_with_options(
                args=args, job_owner={"user_id": tenants.acme.members[0]}, **send_options
            ).message_id

        return send

    return declare


def run_all(broker, worker) -> None:
    broker.join("default", fail_fast=False)
    worker.join()


def nul_error() -> None:
    raise RuntimeError("bad\x00input")


def nan_result() -> dict:
    return {"score": float("nan")}


def nul_result() -> str:
    return "a\x00b"


def huge_result() -> str:
    return "x" * 2_000_000


def object_result() -> object:
    return object()


def test_every_kind_of_unstorable_output_still_records_the_jobs_real_outcome(jobs_of, stub_broker, stub_worker):
    failing = jobs_of(nul_error)()
    nan, nul, huge, obj = (jobs_of(fn)() for fn in (nan_result, nul_result, huge_result, object_result))
    run_all(stub_broker, stub_worker)

    job = job_row(failing)
    assert (job["status"], job["error_type"], job["error_message"]) == ("failed", "RuntimeError", "bad\ufffdinput")
    assert "bad\ufffdinput" in job["error_stack"]
    assert job_row(nul)["result"] == "a\ufffdb"
    for job_id, why in ((nan, "not JSON: Out of range float"), (huge, "2000002 bytes of JSON"), (obj, "not JSON")):
        job = job_row(job_id)
        assert job["status"] == "completed", job["error_message"]
        assert job["result"]["not_stored"].startswith(why), job["result"]
        assert len(job["result"]["preview"]) <= 600
    assert [m.message_id for m in stub_broker.dead_letters] == [failing], "only the failed job, as Retries does"


def test_arguments_that_cannot_be_stored_are_refused_at_the_send(tenants, stub_broker):
    for value, why in (("a\x00b", "NUL character"), (float("nan"), "not storable as JSON")):
        with pytest.raises(InvalidArguments, match=why):
            service.send_job("initialize", user_id=tenants.acme.admin, args={"course_id": value})
    assert (count("job_status"), stub_broker.queues["default"].qsize()) == (0, 0)


def test_an_end_the_database_refuses_for_good_is_recorded_as_failed_with_why(
    stub_broker, stub_worker, tenants, monkeypatch
):
    def refused(*args, **kwargs):
        raise peewee.DataError("value too long for type character varying(10)\nCONTEXT: ...")

    monkeypatch.setattr(transitions, "mark_completed", refused)
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    run_all(stub_broker, stub_worker)

    job = job_row(job_id)
    assert (job["status"], job["error_type"]) == ("failed", "EndNotRecorded")
    assert "the end of attempt 1 (completed) could not be recorded: value too long" in job["error_message"]
    assert [e[0] for e in events(job_id)] == ["enqueued", "started", "failed"]


def test_a_message_the_database_can_never_start_is_dead_lettered_and_never_run(stub_broker, tenants, log_records):
    from dramatiq import Message

    ran = []
    dramatiq.actor(lambda: ran.append(1), broker=stub_broker, actor_name="never_started", max_retries=0)
    # Not sent through this system (no pending row, and an id that is not a UUID): put on the queue
    # as a foreign producer would.
    message = Message(queue_name="default", actor_name="never_started", args=(), kwargs={}, options={}, message_id="x")
    stub_broker.queues["default"].put(message.encode())
    with running(stub_broker, threads=1) as worker:
        run_all(stub_broker, worker)

    assert ran == []
    assert [m.message_id for m in stub_broker.dead_letters] == ["x"]
    refusals = [r.msg for r in log_records if isinstance(r.msg, dict) and r.msg.get("event") == "start_refused"]
    assert refusals and "invalid input syntax for type uuid" in refusals[0]["error"]


def test_time_limit_never_fires_inside_the_write_of_an_end(jobs_of, stub_broker, held_row):
    from dramatiq.middleware import TimeLimit

    gate = threading.Event()
    send = jobs_of(lambda: gate.wait(30), actor_name="gated", time_limit=100)
    # The in-process worker does not emit process_boot, which starts TimeLimit's timer thread.
    manager = next(m for m in stub_broker.middleware if isinstance(m, TimeLimit)).manager
    checks = []
    handle = manager._handle_deadlines
    manager._handle_deadlines = lambda: (checks.append(1), handle())
    manager.interval = 0.02
    manager.start()

    with running(stub_broker, threads=1) as worker:
        job_id = send()
        wait_for(lambda: job_row(job_id)["status"] == "active", what="the job to start")
        held_row(job_id)
        gate.set()
        wait_for(waiting_on_locks(1, "job_finish"), what="the end's write to wait for the held row")
        # Well past the job's 100 ms: the timer has looked at the deadlines many times since.
        seen = len(checks)
        wait_for(lambda: len(checks) >= seen + 20, what="the time limit's timer to check its deadlines")
        held_row.release()
        run_all(stub_broker, worker)

    assert job_row(job_id)["status"] == "completed"
    assert [e[0] for e in events(job_id)] == ["enqueued", "started", "completed"]
    assert stub_broker.dead_letters == [] and stub_broker.queues["default.DQ"].qsize() == 0
