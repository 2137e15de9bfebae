"""Bad input gets a clear error, and nothing is written or published."""

from __future__ import annotations

import pytest

from db.connection import database
from jobs import service
from jobs.errors import (
    InvalidArguments,
    JobNotFound,
    JobNotRecorded,
    MissingOwner,
    SendInTransaction,
    UnknownCourse,
    UnknownJobType,
    UnknownUser,
)
from tests.conftest import UNREACHABLE_URL
from tests.helpers import count


@pytest.fixture
def nothing_changes(stub_broker):
    yield
    assert count("job_status") == 0
    assert count("job_events") == 0
    assert stub_broker.queues["default"].qsize() == 0
    assert stub_broker.queues["default.DQ"].qsize() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"delay_ms": "10"}, "delay_ms must be int, not '10'"),
        ({"delay_ms": True}, "delay_ms must be int, not True"),
        ({"delay_ms": -1}, "delay_ms must be from 0 to 3600000, not -1"),
        ({"should_fail": "yes"}, "should_fail must be bool"),
        ({"fail_attempts": -2}, "fail_attempts must be 0 or more"),
        ({"colour": "red"}, "unexpected keyword argument 'colour'"),
    ],
)
def test_invalid_arguments_are_refused(tenants, nothing_changes, args, message):
    with pytest.raises(InvalidArguments, match="invalid arguments for test_job: ") as raised:
        service.send_job("test_job", user_id=tenants.acme.members[0], args=args)
    assert message in str(raised.value)


def test_arguments_must_be_named(tenants, nothing_changes):
    with pytest.raises(InvalidArguments, match="must be an object of named values"):
        service.send_job("test_job", user_id=tenants.acme.members[0], args=[1, 2])


def test_negative_delay_is_refused(tenants, nothing_changes):
    with pytest.raises(InvalidArguments, match="delay_ms must be a whole number"):
        service.send_job("test_job", user_id=tenants.acme.members[0], delay_ms=-5)


def test_initialize_needs_a_course_id(tenants, nothing_changes):
    with pytest.raises(InvalidArguments, match="missing a required argument: 'course_id'"):
        service.send_job("initialize", user_id=tenants.acme.admin)
    with pytest.raises(InvalidArguments, match="course_id must be a UUID"):
        service.send_job("initialize", user_id=tenants.acme.admin, args={"course_id": "course-1"})


def test_unknown_job_type_is_refused(tenants, nothing_changes):
    with pytest.raises(
        UnknownJobType, match="unknown job type 'generate_everything' \\(known: initialize, test_job\\)"
    ):
        service.send_job("generate_everything", user_id=tenants.acme.members[0])


@pytest.mark.parametrize("user_id", ["7d2b5a50-63b4-4c0c-9d9b-5d0f6a8f2a11", "not-a-uuid", "'; DROP TABLE users; --"])
def test_unknown_user_is_refused(nothing_changes, user_id):
    with pytest.raises(UnknownUser, match="unknown user"):
        service.send_job("test_job", user_id=user_id)


def test_course_of_another_organization_is_refused(tenants, nothing_changes):
    with pytest.raises(UnknownCourse, match="does not exist in the organization of user"):
        service.send_job("initialize", user_id=tenants.acme.members[0], args={"course_id": tenants.globex.course})


def test_job_sent_without_an_owner_is_refused(nothing_changes):
    from actors import test_job

    with pytest.raises(MissingOwner, match="test_job was sent without an owner"):
        test_job.send()


def test_send_fails_loudly_when_the_database_is_unreachable(tenants, stub_broker, database_at):
    with database_at(UNREACHABLE_URL), pytest.raises(JobNotRecorded, match="was not sent"):
        service.send_job("test_job", user_id=tenants.acme.members[0])
    assert count("job_status") == 0
    assert stub_broker.queues["default"].qsize() == 0


@pytest.mark.parametrize("job_id", ["0c8f9a8e-5d43-4f7e-9a0b-1f2e3d4c5b6a", "nope", ""])
def test_unknown_job_id_is_a_clear_not_found(job_id, tenants):
    with pytest.raises(JobNotFound, match="no job with id"):
        service.get_job(job_id, as_user=tenants.acme.admin)
    with pytest.raises(JobNotFound):
        service.job_history(job_id, as_user=tenants.acme.admin)


def test_a_send_inside_an_open_transaction_is_refused(tenants, nothing_changes):
    """Its row would stay invisible to the workers until the caller commits, and a worker could
    take the message first: refused, with nothing written or published."""
    user = tenants.acme.members[0]
    with pytest.raises(SendInTransaction, match="inside an open transaction"), database.atomic():
        service.send_job("test_job", user_id=user)
    with pytest.raises(SendInTransaction), database.atomic():
        service.send_jobs("test_job", [{}, {}], user_id=user)
    # A transaction begun by hand, which Peewee does not know of, is one all the same.
    database.execute_sql("BEGIN")
    try:
        with pytest.raises(SendInTransaction):
            service.send_job("test_job", user_id=user)
    finally:
        database.execute_sql("ROLLBACK")
    assert not database.in_transaction()
