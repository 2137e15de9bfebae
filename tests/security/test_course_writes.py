"""A course is written only by a running `initialize` job of that very course (0017), from the
worker process that runs it (0021): a compromised worker calling course_lock, course_add_module
or course_mark_initialized directly can't rewrite another course, another organization's least
of all, nor write one for a job that is not running, nor for one that another process runs."""

from __future__ import annotations

import psycopg2.errors
import pytest

from db import transitions, worker_token
from jobs import service
from tests.helpers import alive, as_admin

WORKER = "host-a:1:boot/1"
CALLS = {
    "lock": "SELECT course_lock(%(job)s, %(attempt)s, %(course)s)",
    "add_module": "SELECT course_add_module(%(job)s, %(attempt)s, %(course)s, 1, 'Forged')",
    "mark_initialized": "SELECT course_mark_initialized(%(job)s, %(attempt)s, %(course)s)",
}


def course_state(course_id: str) -> list[tuple]:
    return as_admin(
        "SELECT c.status, c.initialized_at, c.organization_id, count(m.id) FROM courses c"
        " LEFT JOIN course_modules m ON m.course_id = c.id WHERE c.id = %s GROUP BY c.id",
        (course_id,),
    )


@pytest.fixture
def initializing(stub_broker, tenants):
    """An `initialize` job of Acme's course that WORKER runs now, at its first attempt."""
    alive(WORKER)
    job_id = service.send_job("initialize", user_id=tenants.acme.admin, args={"course_id": tenants.acme.course})
    assert transitions.mark_active(job_id, WORKER).applied
    return job_id


@pytest.fixture
def as_its_process(worker_session):
    """A session of the workers' role that is WORKER's process: it presents the token that
    `alive` recorded for it, this process's (db/worker_token.py)."""
    return worker_session(worker_token.current())


def refused(as_worker, call: str, job: str, attempt: int, course: str, message: str | None = None) -> None:
    before = course_state(course)
    with pytest.raises(psycopg2.errors.InsufficientPrivilege) as raised, as_worker.cursor() as cursor:
        cursor.execute(CALLS[call], {"job": job, "attempt": attempt, "course": course})
    assert raised.value.diag.message_primary == (
        message
        or f"job {job} (attempt {attempt}) is not a running initialize job of course {course}: it may not write to it"
    )
    assert course_state(course) == before


@pytest.mark.parametrize("call", sorted(CALLS))
def test_a_running_initialization_writes_no_other_course(tenants, initializing, as_worker, call):
    refused(as_worker, call, initializing, 1, tenants.globex.course)


@pytest.mark.parametrize("call", sorted(CALLS))
def test_only_the_attempt_that_runs_writes_its_course(tenants, initializing, as_worker, call):
    refused(as_worker, call, initializing, 2, tenants.acme.course)


@pytest.mark.parametrize("call", sorted(CALLS))
def test_a_job_of_another_type_writes_no_course(stub_broker, tenants, as_worker, call):
    alive(WORKER)
    job_id = service.send_job("test_job", user_id=tenants.acme.admin)
    assert transitions.mark_active(job_id, WORKER).applied
    refused(as_worker, call, job_id, 1, tenants.acme.course)


@pytest.mark.parametrize("call", sorted(CALLS))
def test_an_initialization_that_is_not_running_writes_nothing(stub_broker, tenants, as_worker, call):
    waiting = service.send_job("initialize", user_id=tenants.acme.admin, args={"course_id": tenants.acme.course})
    refused(as_worker, call, waiting, 0, tenants.acme.course)
    alive(WORKER)
    assert transitions.mark_active(waiting, WORKER).applied
    assert transitions.mark_failed(waiting, 1, WORKER, transitions.Failure("E", "m", "s")).applied
    refused(as_worker, call, waiting, 1, tenants.acme.course)


@pytest.mark.parametrize("token", ["random", None], ids=["another process", "no token"])
@pytest.mark.parametrize("call", sorted(CALLS))
def test_only_the_process_that_runs_the_initialization_writes_its_course(
    tenants, initializing, worker_session, call, token
):
    refused(
        worker_session(token),
        call,
        initializing,
        1,
        tenants.acme.course,
        f"job {initializing} (attempt 1) runs in another worker process: this session may not write its course",
    )


def test_the_running_initialization_writes_its_own_course(tenants, initializing, as_its_process):
    values = {"job": initializing, "attempt": 1, "course": tenants.acme.course}
    with as_its_process.cursor() as cursor:
        for call in ("lock", "add_module", "mark_initialized"):
            cursor.execute(CALLS[call], values)
    assert course_state(tenants.acme.course)[0][0] == "initialized"
    assert course_state(tenants.acme.course)[0][3] == 1
