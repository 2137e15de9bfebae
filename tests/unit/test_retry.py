"""Retrying a failed or cancelled job: a new job linked both ways, allowed to its owner and admins."""

from __future__ import annotations

import pytest

from db.connection import database
from jobs import service
from jobs.errors import JobNotFound, JobNotRetryable, PermissionDenied
from tests.conftest import running
from tests.helpers import count, events, job_row, statuses


def finish(broker, worker) -> None:
    broker.join("default", fail_fast=False)
    worker.join()


def actors_of(job_id: str) -> list[tuple[str, str | None, dict]]:
    return [
        (event, None if actor is None else str(actor), details)
        for event, actor, details in database.execute_sql(
            "SELECT event, actor_user_id, details FROM job_events WHERE job_id = %s::uuid ORDER BY id", (job_id,)
        ).fetchall()
    ]


def test_owner_retries_a_failed_job_and_it_runs_again_from_its_first_attempt(stub_broker, stub_worker, tenants):
    owner = tenants.acme.members[0]
    failed = service.send_job("test_job", user_id=owner, args={"fail_attempts": 99})
    finish(stub_broker, stub_worker)
    old = job_row(failed)
    assert (old["status"], old["attempts"], old["options"]["retries"]) == ("failed", 4, 3)

    retried = service.retry_job(failed, owner)
    assert retried.outcome == "retried" and retried.retry_of == failed
    finish(stub_broker, stub_worker)

    new = job_row(retried.job_id)
    # Had it kept the old job's retries, Retries would have given up after one attempt.
    assert (new["status"], new["attempts"], str(new["retry_of"]), new["kwargs"], new["user_id"]) == (
        "failed",
        4,
        failed,
        old["kwargs"],
        old["user_id"],
    )
    assert actors_of(failed)[-1] == ("retried", owner, {"retry_job_id": retried.job_id})
    assert actors_of(retried.job_id)[0] == ("enqueued", owner, {"retry_of": failed})


def test_an_admin_retries_a_members_cancelled_job_and_asking_again_changes_nothing(stub_broker, tenants):
    member, admin = tenants.globex.members[0], tenants.globex.admin
    job_id = service.send_job("test_job", user_id=member)
    service.cancel_job(job_id, member)

    first = service.retry_job(job_id, admin)
    again = service.retry_job(job_id, member)
    assert (again.job_id, again.outcome) == (first.job_id, "already_retried")
    with running(stub_broker, threads=2) as worker:
        finish(stub_broker, worker)
    assert count("job_status") == 2
    retry = job_row(first.job_id)
    assert (str(retry["user_id"]), retry["status"]) == (member, "completed"), "the retry is the member's job, run once"
    assert [e[0] for e in events(first.job_id)] == ["enqueued", "started", "completed"]
    assert [e[:2] for e in actors_of(job_id)] == [
        ("enqueued", member),
        ("cancelled", member),
        ("retried", admin),
        ("delivery_skipped", None),
    ]
    assert actors_of(first.job_id)[0] == ("enqueued", admin, {"retry_of": job_id})


def test_another_member_may_not_retry_and_the_refusal_is_recorded(stub_broker, tenants):
    owner, other = tenants.acme.members
    job_id = service.send_job("test_job", user_id=owner)
    service.cancel_job(job_id, owner)

    with pytest.raises(PermissionDenied, match=f"user {other} may not retry job {job_id}"):
        service.retry_job(job_id, other)
    assert count("job_status") == 1
    assert actors_of(job_id)[-1] == ("retry_refused", other, {"why": "not the owner nor an admin of its organization"})


def test_another_organizations_job_is_not_found_and_nothing_is_recorded(stub_broker, tenants):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    service.cancel_job(job_id, tenants.acme.admin)
    before = events(job_id)

    with pytest.raises(JobNotFound):
        service.retry_job(job_id, tenants.globex.admin)
    assert events(job_id) == before and count("job_status") == 1


@pytest.mark.parametrize("finished", [False, True])
def test_only_failed_or_cancelled_jobs_are_retried(stub_broker, stub_worker, tenants, finished):
    owner = tenants.acme.members[1]
    job_id = service.send_job("test_job", user_id=owner, delay_ms=None if finished else 60_000)
    if finished:
        finish(stub_broker, stub_worker)
    status = "completed" if finished else "pending"
    assert statuses([job_id]) == {job_id: status}

    with pytest.raises(JobNotRetryable, match=f"job {job_id} is {status}: only a failed or cancelled job"):
        service.retry_job(job_id, owner)
    assert count("job_status") == 1
    assert actors_of(job_id)[-1][0] == "retry_refused"


def test_two_retries_at_once_make_one_job(stub_broker, tenants, held_row):
    import threading

    from tests.helpers import wait_for, waiting_on_locks

    owner, admin = tenants.acme.members[0], tenants.acme.admin
    job_id = service.send_job("test_job", user_id=owner)
    service.cancel_job(job_id, owner)
    held_row(job_id)  # both requests reach the old job's row and wait there
    answers = []
    threads = [
        threading.Thread(target=lambda who=who: answers.append(service.retry_job(job_id, who)))
        for who in (owner, admin)
    ]
    for thread in threads:
        thread.start()
    wait_for(waiting_on_locks(2, "job_retry_request"), what="both retries to wait for the job's row")
    held_row.release()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(a.outcome for a in answers) == ["already_retried", "retried"]
    assert answers[0].job_id == answers[1].job_id and count("job_status") == 2


def test_a_job_of_a_type_no_actor_runs_is_not_retried(stub_broker, tenants, admin_db):
    from jobs.errors import UnknownJobType

    owner = tenants.acme.members[0]
    with admin_db.cursor() as cursor:
        cursor.execute(
            "SELECT job_id FROM job_send(gen_random_uuid(), 'retired_job', 'default', %s, NULL, '[]', '{}', '{}', 1,"
            " NULL, NULL, NULL, NULL)",
            (owner,),
        )
        (job_id,) = cursor.fetchone()
    service.cancel_job(str(job_id), owner)

    with pytest.raises(UnknownJobType, match="unknown job type 'retired_job'"):
        service.retry_job(str(job_id), owner)
    assert count("job_status") == 1
