"""Cancellation with StubBroker: authorized, durable, and stopping running jobs for good."""

from __future__ import annotations

import pytest

from jobs import service
from jobs.errors import JobAlreadyFinished, JobNotFound, PermissionDenied, UnknownUser
from tests.conftest import running
from tests.helpers import events, job_row, wait_for


def is_running(job_id: str):
    return lambda: job_row(job_id)["status"] == "active"


def finish(broker, worker) -> None:
    broker.join("default", fail_fast=False)
    worker.join()


def snapshot(job_id: str) -> tuple:
    return job_row(job_id), events(job_id)


def test_user_cancels_job_during_processing(stub_broker, stub_worker, tenants):
    owner = tenants.acme.members[0]
    job_id = service.send_job("test_job", user_id=owner, args={"delay_ms": 30_000})
    wait_for(is_running(job_id), what="the job to start")

    result = service.cancel_job(job_id, owner, reason="changed my mind")
    assert (result.outcome, result.previous, result.interrupting) == ("cancelled", "active", True)
    job = job_row(job_id)
    assert (job["status"], str(job["cancelled_by"]), job["cancel_reason"]) == ("cancelled", owner, "changed my mind")
    assert job["started_at"] is not None and job["started_at"] <= job["cancelled_at"]
    assert job["completed_at"] is None and job["failed_at"] is None

    # The 30 s job stops long before its end: the abort interrupted it.
    wait_for(lambda: events(job_id)[-1][0] == "execution_stopped", what="the running job to stop", timeout=5)
    finish(stub_broker, stub_worker)
    assert [e[:3] for e in events(job_id)] == [
        ("enqueued", None, "pending"),
        ("started", "pending", "active"),
        ("cancelled", "active", "cancelled"),
        ("execution_stopped", "cancelled", None),
    ]


def test_aborted_job_is_not_retried(stub_broker, stub_worker, tenants):
    owner = tenants.globex.members[0]
    job_id = service.send_job("test_job", user_id=owner, args={"delay_ms": 30_000})
    wait_for(is_running(job_id), what="the job to start")
    service.cancel_job(job_id, owner)
    finish(stub_broker, stub_worker)

    assert stub_broker.queues["default.DQ"].qsize() == 0, "no retry was scheduled"
    assert stub_broker.dead_letters == []
    assert [e[0] for e in events(job_id)].count("started") == 1
    assert job_row(job_id)["attempts"] == 1


def test_user_cancels_queued_job(stub_broker, tenants):
    owner = tenants.acme.members[1]
    job_id = service.send_job("test_job", user_id=owner)
    result = service.cancel_job(job_id, owner)
    assert (result.outcome, result.previous, result.interrupting) == ("cancelled", "pending", False)

    with running(stub_broker, threads=2) as worker:
        finish(stub_broker, worker)
    job = job_row(job_id)
    assert (job["status"], job["started_at"], job["attempts"]) == ("cancelled", None, 0)
    assert [e[0] for e in events(job_id)] == ["enqueued", "cancelled", "delivery_skipped"]


def test_delayed_job_cancelled_before_it_is_due_never_runs(stub_broker, stub_worker, tenants):
    owner = tenants.acme.members[0]
    job_id = service.send_job("test_job", user_id=owner, delay_ms=300)
    service.cancel_job(job_id, owner)
    assert job_row(job_id)["scheduled_for"] is None
    finish(stub_broker, stub_worker)

    assert job_row(job_id)["started_at"] is None
    assert [e[0] for e in events(job_id)] == ["enqueued", "cancelled", "delivery_skipped"]


def test_non_owner_tries_to_cancel(stub_broker, tenants):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    before = job_row(job_id)

    with pytest.raises(PermissionDenied, match="only its owner or an admin of its organization may"):
        service.cancel_job(job_id, tenants.acme.members[1])
    assert job_row(job_id) == before
    refused = events(job_id)[-1]
    assert refused == ("cancel_refused", "pending", None, 0)


@pytest.mark.parametrize("who", ["admin", "member"])
def test_users_of_another_organization_cannot_find_the_job(stub_broker, tenants, who):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    outsider = tenants.globex.admin if who == "admin" else tenants.globex.members[0]

    # Not even its existence is told; nothing enters the other organization's history.
    with pytest.raises(JobNotFound, match=f"no job with id {job_id}"):
        service.cancel_job(job_id, outsider)
    assert job_row(job_id)["status"] == "pending"
    assert [event[0] for event in events(job_id)] == ["enqueued"]


def test_completed_job_cannot_be_cancelled(stub_broker, stub_worker, tenants):
    owner = tenants.globex.members[1]
    job_id = service.send_job("test_job", user_id=owner)
    finish(stub_broker, stub_worker)
    before = job_row(job_id)

    with pytest.raises(JobAlreadyFinished, match="is already completed and can no longer be cancelled"):
        service.cancel_job(job_id, owner)
    assert job_row(job_id) == before
    assert events(job_id)[-1] == ("cancel_refused", "completed", None, 1)


def test_failed_job_cannot_be_cancelled(stub_broker, stub_worker, tenants):
    owner = tenants.globex.members[1]
    job_id = service.send_job("test_job", user_id=owner, args={"should_fail": True})
    finish(stub_broker, stub_worker)
    with pytest.raises(JobAlreadyFinished, match="is already failed"):
        service.cancel_job(job_id, tenants.globex.admin)
    assert job_row(job_id)["status"] == "failed"


def test_admin_can_cancel_any_job_of_their_organization(stub_broker, stub_worker, tenants):
    job_id = service.send_job("test_job", user_id=tenants.globex.members[0], args={"delay_ms": 30_000})
    wait_for(is_running(job_id), what="the job to start")

    result = service.cancel_job(job_id, tenants.globex.admin, reason="maintenance")
    assert result.interrupting
    wait_for(lambda: events(job_id)[-1][0] == "execution_stopped", what="the running job to stop", timeout=5)
    job = job_row(job_id)
    assert (job["status"], str(job["cancelled_by"])) == ("cancelled", tenants.globex.admin)


def test_cancelling_twice_is_harmless_and_says_so(stub_broker, tenants):
    owner = tenants.acme.members[0]
    job_id = service.send_job("test_job", user_id=owner)
    service.cancel_job(job_id, owner)
    before = snapshot(job_id)

    again = service.cancel_job(job_id, tenants.acme.admin)
    assert again.outcome == "already_cancelled"
    assert snapshot(job_id) == before
    assert str(job_row(job_id)["cancelled_by"]) == owner, "the first canceller stays on record"


@pytest.mark.parametrize("job_id", ["3f0d6a4e-9a53-4c1e-8d6e-0b4b1c2d3e4f", "not-a-job", ""])
def test_unknown_job_id_is_not_found(tenants, job_id):
    with pytest.raises(JobNotFound, match="no job with id"):
        service.cancel_job(job_id, tenants.acme.admin)


@pytest.mark.parametrize("user_id", ["3f0d6a4e-9a53-4c1e-8d6e-0b4b1c2d3e4f", "robert'); --"])
def test_unknown_requester_is_refused(stub_broker, tenants, user_id):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    with pytest.raises(UnknownUser):
        service.cancel_job(job_id, user_id)
    assert job_row(job_id)["status"] == "pending"


def test_job_that_checks_cooperatively_stops_without_an_abort(stub_broker, stub_worker, tenants):
    from actors import test_job

    owner = tenants.acme.members[0]
    # abortable=False: no asynchronous abort reaches it; only its own checks can stop it.
    message = test_job.send_with_options(
        kwargs={"delay_ms": 30_000, "check_cancellation": True}, abortable=False, job_owner={"user_id": owner}
    )
    wait_for(is_running(message.message_id), what="the job to start")
    service.cancel_job(message.message_id, owner)

    wait_for(lambda: events(message.message_id)[-1][0] == "execution_stopped", what="the job to stop", timeout=5)
    finish(stub_broker, stub_worker)
    assert job_row(message.message_id)["status"] == "cancelled"
    assert stub_broker.queues["default.DQ"].qsize() == 0
