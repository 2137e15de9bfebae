"""The database enforces its own rules against every role (issue 12): probes as a compromised
worker would try them."""

from __future__ import annotations

import psycopg2
import psycopg2.errors
import pytest

from jobs import service
from tests.helpers import job_row


@pytest.fixture
def as_worker(settings):
    """A session of the workers' role, as a compromised worker would have."""
    conn = psycopg2.connect(settings.database_url)
    conn.autocommit = True
    yield conn
    conn.close()


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
