"""Invariants that every job's row and history must satisfy, checked from outside: the tests
and the chaos run ask these after the fact."""

from __future__ import annotations

from typing import Any

from .connection import database


def out_of_order_events(job_ids: list[str] | None = None) -> list[tuple[Any, ...]]:
    """Transitions whose from-status is not the previous transition's to-status, or whose time
    runs backwards."""
    return database.execute_sql(
        """
        SELECT job_id, id, event, from_status, prev_to, created_at, prev_at FROM (
            SELECT job_id, id, event, from_status, created_at,
                   lag(to_status) OVER w AS prev_to, lag(created_at) OVER w AS prev_at
              FROM job_events
             WHERE to_status IS NOT NULL AND (%(ids)s::uuid[] IS NULL OR job_id = ANY(%(ids)s::uuid[]))
            WINDOW w AS (PARTITION BY job_id ORDER BY id)
        ) t
        WHERE from_status IS DISTINCT FROM prev_to OR created_at < prev_at
        """,
        {"ids": job_ids},
    ).fetchall()


def broken_rows(job_ids: list[str] | None = None) -> list[tuple[Any, ...]]:
    """Rows whose status disagrees with their latest transition event or their timestamps."""
    return database.execute_sql(
        """
        SELECT s.job_id, s.status, e.to_status FROM job_status s
          LEFT JOIN LATERAL (SELECT to_status FROM job_events
                              WHERE job_id = s.job_id AND to_status IS NOT NULL
                              ORDER BY id DESC LIMIT 1) e ON true
         WHERE (%(ids)s::uuid[] IS NULL OR s.job_id = ANY(%(ids)s::uuid[]))
           AND (e.to_status IS DISTINCT FROM s.status
                OR s.started_at > coalesce(s.completed_at, s.failed_at, s.cancelled_at, 'infinity')
                OR s.created_at > coalesce(s.started_at, 'infinity'))
        """,
        {"ids": job_ids},
    ).fetchall()


def late_executions(job_ids: list[str]) -> list[tuple[Any, ...]]:
    """Attempts that ran on after their job was taken from them: a worker recorded the end of
    an attempt that was no longer the job's (for a job not cancelled, where that is expected).
    Each is a job that was executing twice at once."""
    return database.execute_sql(
        """
        SELECT e.job_id, e.attempt, e.worker_id, e.details->>'wanted' FROM job_events e
          JOIN job_status s USING (job_id)
         WHERE e.job_id = ANY(%s::uuid[]) AND e.event = 'transition_rejected'
           AND e.details->>'wanted' <> 'active' AND s.status <> 'cancelled'
        """,
        (job_ids,),
    ).fetchall()
