"""Every status statement is bounded: one locked row can't stall the other writes of a process."""

from __future__ import annotations

import threading

import dramatiq

from db.connection import database
from jobs import service
from tests.conftest import running
from tests.helpers import job_row, wait_for, waiting_on_locks


def test_a_row_locked_by_another_session_does_not_stall_the_other_jobs(
    stub_broker, tenants, held_row, database_at, settings, log_records
):
    gate = threading.Event()
    gated = dramatiq.actor(lambda: gate.wait(30), broker=stub_broker, actor_name="gated", max_retries=0)
    owner = {"user_id": tenants.acme.members[0]}
    with database_at(settings.database_url, lock_timeout_ms=200), running(stub_broker, threads=2):
        held = gated.send_with_options(job_owner=owner).message_id
        wait_for(lambda: job_row(held)["status"] == "active", what="the first job to start")
        held_row(held)  # another session holds its row, as long as it likes
        gate.set()
        wait_for(waiting_on_locks(1, "job_finish"), what="the first job's end to wait for its row")

        # Another job starts and ends, both written, while the first one's end still waits.
        other = service.send_job("test_job", user_id=tenants.acme.members[1])
        wait_for(lambda: job_row(other)["status"] == "completed", what="the other job's writes to go through")
        assert job_row(held)["status"] == "active"

        held_row.release()
        wait_for(lambda: job_row(held)["status"] == "completed", what="the first job's end, once its row is free")
    gave_way = [r.msg for r in log_records if isinstance(r.msg, dict) and r.msg.get("event") == "statement_gave_way"]
    assert gave_way and "lock timeout" in gave_way[0]["error"]


def test_every_connection_carries_the_limits(settings):
    # (The suite runs with a lock timeout of a minute: tests/conftest.py.)
    shown = dict(
        database.execute_sql(
            "SELECT name, setting::int FROM pg_settings"
            " WHERE name IN ('statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout')"
        ).fetchall()
    )
    assert shown == {
        "statement_timeout": settings.db_statement_timeout_ms,
        "lock_timeout": settings.db_lock_timeout_ms,
        "idle_in_transaction_session_timeout": settings.db_idle_in_transaction_timeout_ms,
    }
    keepalive = database.connection().get_dsn_parameters()
    assert (keepalive["keepalives"], keepalive["keepalives_idle"], keepalive["connect_timeout"]) == (
        "1",
        str(settings.db_keepalive_s),
        str(settings.db_connect_timeout_s),
    )
