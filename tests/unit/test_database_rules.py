"""The database refuses what breaks the lifecycle on its own, whoever writes: here the
administrator, whom nothing else stops (the system's own roles can't write the tables at all:
tests/security/test_database_rules.py)."""

from __future__ import annotations

import peewee
import psycopg2.errors
import pytest

from db import transitions
from db.connection import database
from jobs import service
from tests.helpers import alive, as_admin, events, job_row


@pytest.fixture
def job(tenants, stub_broker):
    alive("w")
    return service.send_job("test_job", user_id=tenants.acme.members[0])


def sql(statement: str, *params):
    return as_admin(statement, params)


def refused(statement: str, *params, constraint: str):
    with pytest.raises(psycopg2.IntegrityError, match=constraint):
        sql(statement, *params)


def test_illegal_transition_is_refused(job):
    refused(
        "UPDATE job_status SET status = 'completed', completed_at = now() WHERE job_id = %s",
        job,
        constraint="illegal transition pending -> completed",
    )
    assert job_row(job)["status"] == "pending"


def test_finished_job_can_not_change(job):
    assert transitions.mark_active(job, "w").applied
    assert transitions.mark_completed(job, 1, "w", None).applied
    refused(
        "UPDATE job_status SET status = 'active', completed_at = NULL WHERE job_id = %s",
        job,
        constraint="is completed and can no longer change",
    )
    refused("UPDATE job_status SET progress = 3 WHERE job_id = %s", job, constraint="can no longer change")


def test_unknown_status_is_refused(job, tenants):
    refused("UPDATE job_status SET status = 'paused' WHERE job_id = %s", job, constraint="illegal transition")
    refused(
        "INSERT INTO job_status (job_id, job_type, queue, organization_id, user_id, max_attempts, status) "
        "VALUES (gen_random_uuid(), 'test_job', 'default', %s, %s, 1, 'paused')",
        tenants.acme.id,
        tenants.acme.admin,
        constraint="job_status_(status_fkey|started_check)",
    )


def test_timestamp_order_violation_is_refused(job):
    assert transitions.mark_active(job, "w").applied
    refused(
        "UPDATE job_status SET started_at = created_at - interval '1 second' WHERE job_id = %s",
        job,
        constraint="job_status_timestamps_check",
    )
    refused(
        "UPDATE job_status SET status = 'completed', completed_at = started_at - interval '1 ms' WHERE job_id = %s",
        job,
        constraint="job_status_timestamps_check",
    )


def test_terminal_status_needs_its_own_timestamp_only(job):
    assert transitions.mark_active(job, "w").applied
    refused("UPDATE job_status SET status = 'completed' WHERE job_id = %s", job, constraint="job_status_terminal_check")
    refused(
        "UPDATE job_status SET status = 'cancelled', cancelled_at = clock_timestamp(), "
        "completed_at = clock_timestamp() WHERE job_id = %s",
        job,
        constraint="job_status_terminal_check",
    )


def test_progress_stays_within_0_and_100(job):
    refused("UPDATE job_status SET progress = 101 WHERE job_id = %s", job, constraint="job_status_progress_check")
    refused("UPDATE job_status SET progress = -1 WHERE job_id = %s", job, constraint="job_status_progress_check")


def test_owner_must_belong_to_the_job_organization(job, tenants):
    refused(
        "UPDATE job_status SET user_id = %s WHERE job_id = %s",
        tenants.globex.members[0],
        job,
        constraint="identity of job",
    )
    refused(
        "INSERT INTO job_status (job_id, job_type, queue, organization_id, user_id, max_attempts) "
        "VALUES (gen_random_uuid(), 'test_job', 'default', %s, %s, 1)",
        tenants.acme.id,
        tenants.globex.members[0],
        constraint="job_status_user_id_organization_id_fkey",
    )


def test_events_are_append_only(job, admin_db):
    rewrites = ("UPDATE job_events SET event = 'forged' WHERE job_id = %s", "DELETE FROM job_events WHERE job_id = %s")
    # The workers may not even try; the administrator, who may, is stopped by the trigger.
    for statement in rewrites:
        with pytest.raises(peewee.ProgrammingError, match="permission denied for table job_events"):
            with database.atomic():
                database.execute_sql(statement, (job,))
    with admin_db.cursor() as cursor:
        for statement in rewrites:
            with pytest.raises(psycopg2.errors.CheckViolation, match="append-only"):
                cursor.execute(statement, (job,))
    assert len(events(job)) == 1


def test_transition_functions_refuse_an_unknown_target(job):
    with pytest.raises(peewee.DataError, match="can not move a job to cancelled"):
        database.execute_sql(
            "SELECT * FROM job_finish(%s::uuid, 1, 'cancelled', 'w', NULL, NULL, NULL, NULL, 0)", (job,)
        )
