"""Waiting on conditions, and the invariants every test run must leave true."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg2

from db import queries, transitions
from db.audit import broken_rows, out_of_order_events, overlapping_executions  # noqa: F401 - re-exported
from db.connection import database

T = TypeVar("T")

TERMINAL = ("completed", "failed", "cancelled")


def wait_for(condition: Callable[[], T], *, what: str, timeout: float = 15.0, interval: float = 0.02) -> T:
    """Polls `condition` until it returns something truthy, which it returns; fails saying `what`
    never happened, and what the condition last returned."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {value!r})")
        time.sleep(interval)


def alive(*workers: str, lease_s: float = 600) -> None:
    """Gives the processes of these worker ids (host:pid:boot/thread, or just the process part)
    a live lease, as their heartbeat would: the database starts no job for a worker without one.
    They are this process's (its worker token, db/worker_token.py), and their lease is at most
    the database's longest (the suite's JOBS_RECOVERY_WINDOW_S, 30 s)."""
    for worker in workers:
        transitions.heartbeat(worker.split("/")[0], "test", 0, lease_ms=int(lease_s * 1000), broker_id=None)


def worker_limits(
    *, max_lease_ms: int | None = None, max_deliveries: int | None = None, max_delay_ms: int | None = None
) -> None:
    """Changes what the database decides for the workers' calls (db.worker_limits), as `jobctl
    migrate` would from its configuration; each test starts with the configured ones."""
    as_admin(
        "UPDATE worker_limits SET max_lease_ms = coalesce(%s, max_lease_ms),"
        " max_deliveries = coalesce(%s, max_deliveries), max_delay_ms = coalesce(%s, max_delay_ms)",
        (max_lease_ms, max_deliveries, max_delay_ms),
    )


def as_admin(sql: str, params: tuple = ()) -> list[tuple]:
    """One statement as the database's administrator: what a test sets up that the system's
    own roles may not write (they write only through the lifecycle functions)."""
    conn = psycopg2.connect(os.environ["ADMIN_DATABASE_URL"])
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []
    finally:
        conn.close()


def expire_lease(worker: str) -> None:
    """As if the process of this worker id had been silent for its whole lease."""
    as_admin("UPDATE workers SET lease_expires_at = clock_timestamp() WHERE worker_id = %s", (worker.split("/")[0],))


def waiting_on_locks(count: int, query: str = "") -> Callable[[], bool]:
    """A condition: `count` sessions of this database wait for a lock (running `query`, if given)."""

    def check() -> bool:
        found = database.execute_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND query LIKE %s",
            (f"%{query}%",),
        ).fetchone()[0]
        return found == count

    return check


def job_row(job_id: str) -> dict:
    """The job's row as the workers see it, every tenant included; it must exist."""
    row = queries.get_job(job_id)
    assert row is not None, f"job {job_id} has no row"
    return row


def statuses(job_ids: list[str]) -> dict[str, str]:
    rows = database.execute_sql(
        "SELECT job_id::text, status FROM job_status WHERE job_id = ANY(%s::uuid[])", (job_ids,)
    ).fetchall()
    return dict(rows)


def all_terminal(job_ids: list[str]) -> Callable[[], bool]:
    def check() -> bool:
        found = statuses(job_ids)
        return len(found) == len(job_ids) and all(s in TERMINAL for s in found.values())

    return check


def events(job_id: str) -> list[tuple[str, str | None, str | None, int]]:
    return database.execute_sql(
        "SELECT event, from_status, to_status, attempt FROM job_events WHERE job_id = %s::uuid ORDER BY id",
        (job_id,),
    ).fetchall()


def count(table: str) -> int:
    return database.execute_sql(f"SELECT count(*) FROM {table}").fetchone()[0]


def insert_job(organization: str, user: str, status: str, *, age_s: float, job_type: str = "test_job") -> str:
    """A job written straight into the tables by the administrator, as if it had reached `status`
    `age_s` seconds ago (a finished job ended then; a waiting or running one was last touched
    then), with the events it would have: what retention is tested on, without waiting days."""
    return insert_jobs(organization, user, status, age_s=age_s, job_type=job_type)[0]


def insert_jobs(
    organization: str, user: str, status: str, *, age_s: float, job_type: str = "test_job", count: int = 1
) -> list[str]:
    """`count` jobs as insert_job makes one, in one statement."""
    attempts = 0 if status == "pending" else 1
    ended = {"completed": "completed_at", "failed": "failed_at", "cancelled": "cancelled_at"}.get(status)
    rows = as_admin(
        "WITH t AS (SELECT clock_timestamp() - %(age)s * interval '1 second' AS at),"
        " j AS (INSERT INTO job_status (job_id, job_type, queue, organization_id, user_id, status, attempts,"
        "   max_attempts, progress, created_at, started_at, completed_at, failed_at, cancelled_at, updated_at, worker_id)"
        " SELECT gen_random_uuid(), %(type)s, 'default', %(org)s, %(user)s, %(status)s, %(attempts)s, 4,"
        "   CASE WHEN %(status)s = 'completed' THEN 100 ELSE 0 END, t.at - interval '2 seconds',"
        "   CASE WHEN %(attempts)s > 0 THEN t.at - interval '1 second' END,"
        "   CASE WHEN %(ended)s = 'completed_at' THEN t.at END, CASE WHEN %(ended)s = 'failed_at' THEN t.at END,"
        "   CASE WHEN %(ended)s = 'cancelled_at' THEN t.at END, t.at,"
        "   CASE WHEN %(attempts)s > 0 THEN 'gone:1:1/1' END FROM t, generate_series(1, %(count)s)"
        "   RETURNING job_id, created_at, started_at),"
        " e AS (INSERT INTO job_events (job_id, event, from_status, to_status, attempt, created_at)"
        "   SELECT job_id, 'enqueued', NULL, 'pending', 0, created_at FROM j"
        "   UNION ALL SELECT job_id, 'started', 'pending', 'active', 1, started_at FROM j WHERE started_at IS NOT NULL"
        "   UNION ALL SELECT job_id, %(event)s, 'active', %(status)s, 1, t.at FROM j, t"
        "     WHERE %(status)s NOT IN ('pending', 'active'))"
        " SELECT job_id::text FROM j",
        {
            "age": age_s,
            "type": job_type,
            "org": organization,
            "user": user,
            "status": status,
            "attempts": attempts,
            "ended": ended,
            "event": "retry_scheduled" if status == "retrying" else status,
            "count": count,
        },
    )
    return [job_id for (job_id,) in rows]


def run_alone(coroutine: Coroutine[Any, Any, T]) -> T:
    """asyncio.run(coroutine), on a thread of its own: in a pytest worker that ran the browser
    tests, Playwright's loop is already running on the main thread."""
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, coroutine).result()
