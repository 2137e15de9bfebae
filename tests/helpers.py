"""Waiting on conditions, and the invariants every test run must leave true."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

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


def out_of_order_events() -> list[tuple[Any, ...]]:
    """Transitions whose from-status is not the previous transition's to-status, or whose time
    runs backwards, across every job."""
    return database.execute_sql(
        """
        SELECT job_id, id, event, from_status, prev_to, created_at, prev_at FROM (
            SELECT job_id, id, event, from_status, created_at,
                   lag(to_status) OVER w AS prev_to, lag(created_at) OVER w AS prev_at
              FROM job_events WHERE to_status IS NOT NULL
            WINDOW w AS (PARTITION BY job_id ORDER BY id)
        ) t
        WHERE from_status IS DISTINCT FROM prev_to OR created_at < prev_at
        """
    ).fetchall()


def broken_rows() -> list[tuple[Any, ...]]:
    """Rows whose status disagrees with their latest transition event or their timestamps."""
    return database.execute_sql(
        """
        SELECT s.job_id, s.status, e.to_status FROM job_status s
          LEFT JOIN LATERAL (SELECT to_status FROM job_events
                              WHERE job_id = s.job_id AND to_status IS NOT NULL
                              ORDER BY id DESC LIMIT 1) e ON true
         WHERE e.to_status IS DISTINCT FROM s.status
            OR s.started_at > coalesce(s.completed_at, s.failed_at, s.cancelled_at, 'infinity')
            OR s.created_at > coalesce(s.started_at, 'infinity')
        """
    ).fetchall()


def events(job_id: str) -> list[tuple[str, str | None, str | None, int]]:
    return database.execute_sql(
        "SELECT event, from_status, to_status, attempt FROM job_events WHERE job_id = %s::uuid ORDER BY id",
        (job_id,),
    ).fetchall()


def count(table: str) -> int:
    return database.execute_sql(f"SELECT count(*) FROM {table}").fetchone()[0]
