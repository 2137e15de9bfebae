"""The database enforces its own rules against every role (issue 12): probes as a compromised
worker would try them."""

from __future__ import annotations

import psycopg2
import psycopg2.errors
import pytest

from db.connection import database
from jobs import service
from tests.helpers import job_row


def completed_job(stub_broker, stub_worker, user: str) -> str:
    job_id = service.send_job("test_job", user_id=user)
    stub_broker.join("default")
    stub_worker.join()
    assert job_row(job_id)["status"] == "completed"
    return job_id


def test_the_workers_role_makes_no_temporary_tables(as_worker):
    with pytest.raises(psycopg2.errors.InsufficientPrivilege), as_worker.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE job_states (status text, terminal boolean)")


def test_shadow_tables_in_a_session_change_no_rule(stub_broker, stub_worker, tenants, admin_db):
    job_id = completed_job(stub_broker, stub_worker, tenants.acme.members[0])
    # The administrator may make temporary tables: with them, the probe of the issue, as it was.
    with admin_db.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE job_states (status text, terminal boolean)")
        cursor.execute("INSERT INTO job_states VALUES ('completed', false), ('pending', false)")
        cursor.execute("CREATE TEMP TABLE job_transitions (from_status text, to_status text)")
        cursor.execute("INSERT INTO job_transitions VALUES ('completed', 'pending')")
        cursor.execute("SET search_path = pg_temp, public")
        with pytest.raises(psycopg2.errors.CheckViolation, match="can no longer change"):
            cursor.execute(
                "UPDATE job_status SET status = 'pending', result = '\"forged\"' WHERE job_id = %s", (job_id,)
            )
    row = job_row(job_id)
    assert (row["status"], row["result"]) == ("completed", {"waited_ms": 0, "attempt": 1})


def test_every_function_pins_its_search_path(admin_db):
    with admin_db.cursor() as cursor:
        cursor.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace"
            " AND NOT coalesce('search_path=pg_catalog, public, pg_temp' = ANY (p.proconfig), false)"
        )
        assert cursor.fetchall() == []


@pytest.mark.parametrize(
    "statement",
    [
        # Cancel any job, in an admin's name.
        "UPDATE job_status SET status = 'cancelled', cancelled_at = now(), cancelled_by = %(admin)s WHERE job_id = %(job)s",
        # A job that starts out completed, in 2000.
        "INSERT INTO job_status (job_id, job_type, queue, organization_id, user_id, max_attempts, status, attempts,"
        " created_at, started_at, completed_at, updated_at) VALUES (gen_random_uuid(), 'test_job', 'default',"
        " %(org)s, %(member)s, 1, 'completed', 1, '2000-01-01', '2000-01-01', '2000-01-01', '2000-01-01')",
        # History in the name of a user of another organization.
        "INSERT INTO job_events (job_id, event, attempt, actor_user_id) VALUES (%(job)s, 'forged', 0, %(other)s)",
        "SELECT job_event(%(job)s, 'forged', NULL, NULL, 0, %(other)s, NULL, '{}', now())",
        # A send in another user's name, or linked to a job it doesn't retry.
        "SELECT * FROM job_send(gen_random_uuid(), 'test_job', 'default', %(member)s, NULL, '[]', '{}', '{}', 4,"
        " NULL, NULL, %(job)s, %(other)s)",
        # A course moved to another organization, or retitled.
        "UPDATE courses SET organization_id = %(other_org)s WHERE id = %(course)s",
        "UPDATE courses SET title = 'taken' WHERE id = %(course)s",
        "DELETE FROM job_status WHERE job_id = %(job)s",
        "UPDATE workers SET lease_expires_at = now() + interval '1 day'",
    ],
)
def test_the_workers_role_writes_only_through_the_lifecycle_functions(stub_broker, tenants, as_worker, statement):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    values = {
        "job": job_id,
        "admin": tenants.acme.admin,
        "org": tenants.acme.id,
        "member": tenants.acme.members[0],
        "other": tenants.globex.members[0],
        "other_org": tenants.globex.id,
        "course": tenants.acme.course,
    }
    with pytest.raises(psycopg2.errors.InsufficientPrivilege), as_worker.cursor() as cursor:
        cursor.execute(statement, values)
    assert job_row(job_id)["status"] == "pending"


def test_a_worker_cannot_stop_a_job_it_does_not_hold(stub_broker, tenants, worker_session):
    from db import transitions
    from tests.helpers import alive, events

    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    alive("host-a:1:boot/1")
    assert transitions.mark_active(job_id, "host-a:1:boot/1").applied
    # Another worker process, as itself (its own token): the job is not its own.
    with worker_session().cursor() as cursor:
        cursor.execute("SELECT worker_heartbeat('host-b:2:boot', 'host-b', 2, 30000, NULL)")
        cursor.execute("SELECT outcome FROM job_stop(%s, 1, 'host-b:2:boot/1', 'abort', 0)", (job_id,))
        assert cursor.fetchone() == ("rejected",)
    assert job_row(job_id)["status"] == "active", "it runs on, as its own worker's"
    assert events(job_id)[-1][0] == "transition_rejected"


def test_a_worker_cannot_act_as_a_user(tenants, as_worker):
    with as_worker.cursor() as cursor:
        cursor.execute("SELECT pg_has_role('jobs_worker', 'jobs_user', 'MEMBER')")
        assert cursor.fetchone() == (False,)
        with pytest.raises(psycopg2.errors.InsufficientPrivilege, match="permission denied to set role"):
            cursor.execute(
                "SELECT set_config('role', 'jobs_user', false), set_config('jobs.user_id', %s, false)",
                (tenants.globex.admin,),
            )


def test_a_service_acts_as_the_user_it_names(tenants, settings):
    from db import scope  # on this process's connection: the services' role

    with scope.as_user(tenants.acme.admin) as viewer:
        assert (str(viewer.user_id), str(viewer.organization_id)) == (tenants.acme.admin, tenants.acme.id)
        role, identity = database.execute_sql("SELECT current_user, current_setting('jobs.user_id')").fetchone()
        assert (role, identity) == ("jobs_user", tenants.acme.admin)


# What each role may run, pinned: a function added later is open to nobody until it is named here.
WORKER_FUNCTIONS = {
    "course_add_module(uuid,integer,uuid,integer,text)",
    "course_lock(uuid,integer,uuid)",
    "course_mark_initialized(uuid,integer,uuid)",
    "job_fail_unsendable(uuid)",
    "job_finish(uuid,integer,text,text,jsonb,text,text,text,integer)",
    "job_lease_expired(uuid,integer,text,integer)",
    "job_metrics_count(boolean,integer)",
    "job_progress(uuid,integer,integer,text)",
    "job_prune_expired(integer)",
    "job_reap(timestamp with time zone)",
    "job_reschedule(uuid,bigint,jsonb)",
    "job_start(uuid,text)",
    "job_stop(uuid,integer,text,text,integer)",
    "worker_heartbeat(text,text,integer,bigint,text)",
    "worker_report(text,jsonb)",
    "worker_stopped(text,boolean)",
}
SERVICE_ONLY = {"job_send(uuid,text,text,uuid,uuid,jsonb,jsonb,jsonb,integer,bigint,text)"}
USER_FUNCTIONS = {
    "job_cancel_request(uuid,text)",
    "job_retry_request(uuid,uuid,text[])",
    "jobs_current_is_admin()",
    "jobs_current_org()",
    "jobs_current_user()",
}


def executable_by(admin_db, role: str) -> set[str]:
    with admin_db.cursor() as cursor:
        cursor.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace"
            " AND p.prorettype <> 'trigger'::regtype AND has_function_privilege(%s, p.oid, 'EXECUTE')",
            (role,),
        )
        return {name for (name,) in cursor.fetchall()}


def test_each_role_runs_exactly_the_functions_named_for_it(admin_db):
    # Nothing through PUBLIC, which any role (one made later included) holds: every grant is by
    # name, whichever migration made or replaced the function (0016's, 0017's, 0021's).
    assert executable_by(admin_db, "public") == set()
    assert executable_by(admin_db, "jobs_worker") == WORKER_FUNCTIONS
    assert executable_by(admin_db, "jobs_service") == WORKER_FUNCTIONS | SERVICE_ONLY | USER_FUNCTIONS
    assert executable_by(admin_db, "jobs_user") == USER_FUNCTIONS


def test_a_function_made_by_a_later_migration_is_open_to_nobody(admin_db):
    """As the role that migrates makes it (0015's default, given per schema, never took)."""
    with admin_db.cursor() as cursor:
        cursor.execute("CREATE FUNCTION later_migration_probe() RETURNS integer LANGUAGE sql AS 'SELECT 1'")
        try:
            cursor.execute(
                "SELECT r.rolname FROM pg_roles r WHERE r.rolname IN ('jobs_worker', 'jobs_service', 'jobs_user')"
                " AND has_function_privilege(r.oid, 'later_migration_probe()'::regprocedure, 'EXECUTE')"
            )
            assert cursor.fetchall() == []
        finally:
            cursor.execute("DROP FUNCTION later_migration_probe()")


def test_a_worker_sends_no_job(tenants, as_worker):
    with pytest.raises(psycopg2.errors.InsufficientPrivilege), as_worker.cursor() as cursor:
        cursor.execute(
            "SELECT * FROM job_send(gen_random_uuid(), 'test_job', 'default', %s, NULL, '[]', '{}', '{}', 4, NULL, NULL)",
            (tenants.globex.admin,),
        )
