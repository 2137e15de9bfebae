"""The database's connections cut mid-run: workers reconnect and every job ends correctly."""

from __future__ import annotations

import peewee
import psycopg2
import pytest

from db.connection import database
from jobs import service
from middleware import StatusMiddleware
from tests.conftest import ADMIN_URL, running
from tests.helpers import all_terminal, broken_rows, job_row, out_of_order_events, statuses, wait_for


def terminate_connections(database_name: str) -> int:
    admin = psycopg2.connect(ADMIN_URL)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (database_name,),
            )
            return cursor.fetchone()[0]
    finally:
        admin.close()


def completed_count(job_ids: list[str]) -> int:
    return sum(status == "completed" for status in statuses(job_ids).values())


def test_terminated_connections_mid_run(redis_broker, redis_worker, tenants, settings, log_records):
    name = settings.database_url.rsplit("/", 1)[1]
    user = tenants.acme.members[0]
    job_ids = [service.send_job("test_job", user_id=user, args={"delay_ms": n % 40}) for n in range(240)]

    for threshold in (40, 100, 160):
        wait_for(lambda t=threshold: completed_count(job_ids) >= t, what=f"{threshold} jobs to complete")
        assert terminate_connections(name) > 0
        database.close()  # this thread's connection was cut too
        # Sends during the outage's aftermath go through as well.
        job_ids.append(service.send_job("test_job", user_id=user))

    wait_for(all_terminal(job_ids), what="every job to finish after the cuts", timeout=60)
    assert set(statuses(job_ids).values()) == {"completed"}
    assert out_of_order_events() == []
    assert broken_rows() == []
    reconnects = [r for r in log_records if isinstance(r.msg, dict) and r.msg["event"] == "database_unreachable"]
    assert reconnects, "the cuts were noticed and survived by reconnecting"


def test_a_job_after_the_connections_were_cut_gets_a_working_one(redis_broker, tenants, settings):
    """initialize uses the database itself: the next one to run on a thread whose connection the
    server dropped must not fail for it."""
    name = settings.database_url.rsplit("/", 1)[1]
    user = tenants.acme.members[0]
    course = {"course_id": tenants.acme.course}
    with running(redis_broker, threads=1):
        first = service.send_job("initialize", user_id=user, args=course)
        wait_for(all_terminal([first]), what="the first initialization")
        assert terminate_connections(name) > 0  # the worker thread's connection among them
        database.close()
        # The group commit finds its connection dropped and opens another: the next write fails
        # once (its caller tries again on its own thread's connection), the one after works.
        commits = next(m for m in redis_broker.middleware if isinstance(m, StatusMiddleware)).commits
        with pytest.raises(peewee.OperationalError):
            commits.fetchone("SELECT 1", ())
        assert commits.fetchone("SELECT 1", ()) == (1,)
        second = service.send_job("initialize", user_id=user, args=course)
        wait_for(all_terminal([second]), what="the second initialization")
    assert statuses([first, second]) == {first: "completed", second: "completed"}
    assert job_row(second)["attempts"] == 1, "it did not fail on the dropped connection"
