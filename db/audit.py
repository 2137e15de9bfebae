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


def overlapping_executions(job_ids: list[str] | None = None) -> list[tuple[Any, ...]]:
    """Pairs of executions of one job that overlapped in time: each would be a job run twice at once.

    An execution starts at its `started` event. It ends at the first event its own worker thread
    wrote for the job after that start (its end, a refusal of its end, or its stop), at the time
    that event gives for the end of the execution (`ended_at`, measured by the worker when its
    write was late), or else at the event that took the job from its worker (`worker_lost`, or
    the reaper's `failed`): the worker died, or never wrote again. One with neither never ended.
    """
    return database.execute_sql(
        """
        WITH runs AS (
            SELECT s.job_id, s.id, s.attempt, s.worker_id, s.created_at AS started_at,
                   coalesce(own.ended_at, taken.created_at, 'infinity') AS ended_at
              FROM job_events s
              LEFT JOIN LATERAL (
                  SELECT coalesce((x.details->>'ended_at')::timestamptz, x.created_at) AS ended_at
                    FROM job_events x
                   WHERE x.job_id = s.job_id AND x.id > s.id AND x.worker_id = s.worker_id
                   ORDER BY x.id LIMIT 1) own ON true
              LEFT JOIN LATERAL (
                  SELECT x.created_at FROM job_events x
                   WHERE x.job_id = s.job_id AND x.id > s.id AND x.details->>'lost_worker' = s.worker_id
                   ORDER BY x.id LIMIT 1) taken ON true
             WHERE s.event = 'started' AND (%(ids)s::uuid[] IS NULL OR s.job_id = ANY(%(ids)s::uuid[]))
        )
        SELECT a.job_id, a.attempt, a.worker_id, a.started_at, a.ended_at, b.attempt, b.worker_id, b.started_at
          FROM runs a JOIN runs b ON b.job_id = a.job_id AND b.id > a.id AND b.started_at < a.ended_at
         ORDER BY a.job_id, a.id
        """,
        {"ids": job_ids},
    ).fetchall()
