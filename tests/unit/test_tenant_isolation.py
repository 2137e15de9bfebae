"""Row-level security, as migrated: what a user may see and do is decided by PostgreSQL."""

from __future__ import annotations

import json

import peewee
import psycopg2.errors
import pytest

from db import scope
from db.connection import database
from jobs import service
from jobs.errors import JobNotFound, PermissionDenied, UnknownUser
from tests.helpers import events, job_row
from tests.support.cli import jobctl

TENANT_TABLES = ("organizations", "users", "courses", "course_modules", "job_status", "job_events")


@pytest.fixture
def jobs(tenants, stub_broker):
    """Two jobs for each member of both organizations, and one for each admin: ids by user."""
    owners = [tenants.acme.admin, *tenants.acme.members, tenants.globex.admin, *tenants.globex.members]
    return {
        owner: [service.send_job("test_job", user_id=owner) for _ in range(1 if owner in admins(tenants) else 2)]
        for owner in owners
    }


def admins(tenants) -> set[str]:
    return {tenants.acme.admin, tenants.globex.admin}


def as_user(user_id: str, statement: str, *params) -> list[tuple]:
    with scope.as_user(user_id):
        return database.execute_sql(statement, params).fetchall()


def ids(rows) -> set[str]:
    return {str(row["job_id"]) for row in rows}


def test_member_lists_only_their_own_jobs(tenants, jobs):
    alice, bob = tenants.acme.members

    assert ids(service.list_jobs(as_user=alice)) == set(jobs[alice])
    assert ids(service.list_jobs(as_user=bob, status="pending")) == set(jobs[bob])
    assert {row[0] for row in as_user(alice, "SELECT job_id::text FROM job_status")} == set(jobs[alice])


def test_admin_lists_every_job_of_their_organization_and_none_of_another(tenants, jobs):
    acme = [tenants.acme.admin, *tenants.acme.members]
    globex = [tenants.globex.admin, *tenants.globex.members]

    assert ids(service.list_jobs(as_user=tenants.acme.admin)) == {j for user in acme for j in jobs[user]}
    assert ids(service.list_jobs(as_user=tenants.globex.admin)) == {j for user in globex for j in jobs[user]}
    assert service.list_jobs(as_user=tenants.acme.admin, organization_id=tenants.globex.id) == []
    everything = {row[0] for row in as_user(tenants.acme.admin, "SELECT organization_id::text FROM job_status")}
    assert everything == {tenants.acme.id}


def test_member_cannot_read_another_members_job_by_id(tenants, jobs):
    alice, bob = tenants.acme.members
    bobs_job = jobs[bob][0]

    with pytest.raises(JobNotFound, match=f"no job with id {bobs_job}"):
        service.get_job(bobs_job, as_user=alice)
    with pytest.raises(JobNotFound):
        service.job_history(bobs_job, as_user=alice)
    assert as_user(alice, "SELECT count(*) FROM job_events WHERE job_id = %s::uuid", bobs_job) == [(0,)]
    # Their admin may; so may Bob.
    assert service.get_job(bobs_job, as_user=tenants.acme.admin)["status"] == "pending"
    assert [e["event"] for e in service.job_history(bobs_job, as_user=bob)] == ["enqueued"]


def test_user_of_one_organization_reads_none_of_anothers_rows(tenants, jobs, stub_broker, stub_worker):
    service.send_job("initialize", user_id=tenants.globex.admin, args={"course_id": tenants.globex.course})
    stub_broker.join("default")
    stub_worker.join()
    for user in (tenants.acme.admin, tenants.acme.members[0]):
        seen = {
            table: as_user(
                user, f"SELECT count(*) FROM {table} t WHERE {owner_of(table)} = %s::uuid", tenants.globex.id
            )
            for table in TENANT_TABLES
        }
        assert seen == {table: [(0,)] for table in TENANT_TABLES}
        globex_job = jobs[tenants.globex.members[0]][0]
        with pytest.raises(JobNotFound):
            service.get_job(globex_job, as_user=user)
    # What they don't see is there: the workers' role sees it.
    assert database.execute_sql("SELECT count(*) FROM course_modules").fetchone()[0] == 5


def owner_of(table: str) -> str:
    """The organization of a row of `table`, as an SQL expression over its alias t."""
    return {
        "organizations": "t.id",
        "course_modules": "(SELECT organization_id FROM courses c WHERE c.id = t.course_id)",
        "job_events": "(SELECT organization_id FROM job_status j WHERE j.job_id = t.job_id)",
    }.get(table, "t.organization_id")


def test_user_can_neither_update_nor_delete_another_organizations_rows(tenants, jobs, admin_db):
    alice = tenants.acme.members[0]
    globex_job = jobs[tenants.globex.members[0]][0]
    for statement in (
        "UPDATE courses SET title = 'taken' WHERE id = %s",
        "DELETE FROM courses WHERE id = %s",
        "UPDATE job_status SET progress = 99 WHERE job_id = %s",
        "DELETE FROM job_events WHERE job_id = %s",
    ):
        target = tenants.globex.course if "courses" in statement else globex_job
        with pytest.raises(peewee.ProgrammingError, match="permission denied"):
            as_user(alice, statement, target)
    # Even a stray grant would write nothing: jobs_user has no policy that lets it write.
    with admin_db.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute("GRANT UPDATE, DELETE ON courses, job_status TO jobs_user")
        cursor.execute("SELECT set_config('role', 'jobs_user', true), set_config('jobs.user_id', %s, true)", (alice,))
        cursor.execute("UPDATE courses SET title = 'taken' WHERE id = %s", (tenants.globex.course,))
        assert cursor.rowcount == 0
        cursor.execute("DELETE FROM job_status WHERE job_id = %s", (globex_job,))
        assert cursor.rowcount == 0
        cursor.execute("ROLLBACK")
    assert job_row(globex_job)["progress"] == 0
    assert database.execute_sql("SELECT title FROM courses WHERE id = %s", (tenants.globex.course,)).fetchone() == (
        "Globex Safety Basics",
    )


def test_user_cannot_set_a_jobs_status_directly(tenants, jobs):
    alice = tenants.acme.members[0]
    own = jobs[alice][0]
    for statement in (
        "UPDATE job_status SET status = 'cancelled', cancelled_at = clock_timestamp() WHERE job_id = %s",
        "SELECT * FROM job_start(%s::uuid, 'forged-worker')",
        "SELECT * FROM job_finish(%s::uuid, 1, 'completed', 'w', NULL, NULL, NULL, NULL, 0)",
        "INSERT INTO job_events (job_id, event, attempt) VALUES (%s, 'forged', 0)",
    ):
        with pytest.raises(peewee.ProgrammingError, match="permission denied"):
            as_user(alice, statement, own)
    # The way that exists is the cancellation, which records who asked.
    assert service.cancel_job(own, alice).outcome == "cancelled"
    assert str(job_row(own)["cancelled_by"]) == alice
    assert [e[0] for e in events(own)] == ["enqueued", "cancelled"]


def test_identity_does_not_leak_into_the_next_transaction(tenants, jobs):
    alice = tenants.acme.members[0]
    who = "SELECT current_user::text, coalesce(current_setting('jobs.user_id', true), ''), pg_backend_pid()"
    before = database.execute_sql(who).fetchone()
    with scope.as_user(alice):
        inside = database.execute_sql(who).fetchone()
    after_commit = database.execute_sql(who).fetchone()
    with pytest.raises(RuntimeError, match="the block failed"), scope.as_user(alice):
        raise RuntimeError("the block failed")
    after_rollback = database.execute_sql(who).fetchone()

    assert inside == ("jobs_user", alice, before[2])
    assert before == after_commit == after_rollback == ("jobs_service", "", before[2])
    # Nor can a scope be opened where its identity would outlive it.
    with database.atomic(), pytest.raises(scope.ScopeError):
        with scope.as_user(alice):
            pass
    assert database.execute_sql("SELECT count(*) FROM job_status").fetchone()[0] == sum(map(len, jobs.values()))


def test_a_query_with_no_identity_sees_nothing(tenants, jobs):
    with database.atomic():
        database.execute_sql("SET LOCAL ROLE jobs_user")
        seen = {table: database.execute_sql(f"SELECT count(*) FROM {table}").fetchone()[0] for table in TENANT_TABLES}
    assert seen == dict.fromkeys(TENANT_TABLES, 0)
    assert database.execute_sql("SELECT count(*) FROM job_status").fetchone()[0] > 0


def test_spoofing_another_users_id_gives_nothing(tenants, jobs):
    alice, bob = tenants.acme.members

    assert service.list_jobs(as_user=alice, user_id=bob) == []
    assert service.list_jobs(as_user=alice, organization_id=tenants.acme.id) == service.list_jobs(as_user=alice)
    assert service.list_jobs(as_user=tenants.acme.admin, user_id=tenants.globex.members[0]) == []
    # The canceller is the identity of the transaction, not an argument anyone can pass.
    with pytest.raises(PermissionDenied):
        service.cancel_job(jobs[bob][0], alice)
    with pytest.raises(peewee.ProgrammingError, match="permission denied for function job_cancel"):
        as_user(alice, "SELECT * FROM job_cancel(%s::uuid, %s::uuid, NULL)", jobs[bob][0], bob)
    assert job_row(jobs[bob][0])["status"] == "pending"


HOSTILE = ["' OR '1'='1", "x'; RESET ROLE; SELECT '", "%s", "\\x00", "ünïcødé ✓", "0" * 10_000]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_strings_in_filters_are_treated_as_data(tenants, jobs, hostile):
    alice = tenants.acme.members[0]

    assert service.list_jobs(as_user=alice, user_id=hostile) == []
    assert service.list_jobs(as_user=tenants.acme.admin, organization_id=hostile) == []
    with pytest.raises(JobNotFound):
        service.get_job(hostile, as_user=alice)
    with pytest.raises(ValueError, match="unknown status"):
        service.list_jobs(as_user=alice, status=hostile)
    with pytest.raises(UnknownUser):
        service.list_jobs(as_user=hostile)
    cancelled = service.cancel_job(jobs[alice][0], alice, reason=hostile)
    assert cancelled.outcome == "cancelled"
    assert job_row(jobs[alice][0])["cancel_reason"] == hostile


def test_unknown_user_is_a_clear_error_for_every_user_path(tenants, jobs):
    nobody = "00000000-0000-4000-8000-000000000000"
    job_id = jobs[tenants.acme.members[0]][0]
    for call in (
        lambda: service.get_job(job_id, as_user=nobody),
        lambda: service.list_jobs(as_user=nobody),
        lambda: service.job_history(job_id, as_user=nobody),
        lambda: service.cancel_job(job_id, nobody),
    ):
        with pytest.raises(UnknownUser, match=f"unknown user {nobody}"):
            call()
    assert job_row(job_id)["status"] == "pending"


def test_jobctl_show_and_list_as_a_user(tenants, jobs):
    alice, bob = tenants.acme.members
    bobs_job = jobs[bob][0]

    listed = jobctl("list", "--as", "alice@acme.example", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {job["job_id"] for job in json.loads(listed.stdout)["jobs"]} == set(jobs[alice])
    hidden = jobctl("show", bobs_job, "--as", "alice@acme.example")
    assert (hidden.returncode, hidden.stderr.strip()) == (2, f"error: no job with id {bobs_job}")
    shown = jobctl("show", bobs_job, "--as", "admin@acme.example", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["job"]["status"] == "pending"
    stranger = jobctl("list", "--as", "nobody@acme.example")
    assert (stranger.returncode, stranger.stderr.strip()) == (2, "error: no user nobody@acme.example")


def test_workers_process_every_job_of_every_organization_with_rls_on(tenants, stub_broker, stub_worker):
    role = database.execute_sql(
        "SELECT rolname, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    # This process logs in as a service (it runs workers in its threads too): under the policies.
    assert role == ("jobs_service", False, False), "the workers must run under the policies, not around them"
    forced = database.execute_sql(
        "SELECT relname FROM pg_class WHERE relrowsecurity AND relforcerowsecurity AND relname = ANY(%s)",
        (list(TENANT_TABLES),),
    ).fetchall()
    assert {row[0] for row in forced} == set(TENANT_TABLES)

    sent = [
        service.send_job("test_job", user_id=user, args={"fail_attempts": 1})
        for org in (tenants.acme, tenants.globex)
        for user in (org.admin, *org.members)
    ]
    sent += [
        service.send_job("initialize", user_id=org.admin, args={"course_id": org.course})
        for org in (tenants.acme, tenants.globex)
    ]
    stub_broker.join("default")
    stub_worker.join()

    assert {job_id: job_row(job_id)["status"] for job_id in sent} == dict.fromkeys(sent, "completed")
    initialized = database.execute_sql("SELECT count(*) FROM courses WHERE status = 'initialized'").fetchone()[0]
    assert initialized == 2
    with scope.as_user(tenants.globex.members[0]):
        assert database.execute_sql("SELECT count(*) FROM course_modules").fetchone()[0] == 5


def test_migrating_again_with_the_roles_in_place_is_harmless(settings, admin_db):
    import db

    assert db.migrate(settings.admin_database_url) == []
    with admin_db.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
            " AND relkind = 'r' AND relowner <> 'jobs_owner'::regrole"
        )
        assert cursor.fetchone() == (0,), "every table belongs to jobs_owner"
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cursor.execute("SET ROLE jobs_user; INSERT INTO organizations (name) VALUES ('Intruder')")
        cursor.execute("RESET ROLE")
