"""What a live view reads: the events committed since its last read, each exactly once.

A reader keeps a Cursor: the snapshot of its last read (`seen`). The events new to it are those
whose writing transaction `seen` did not see and the current statement does
(`job_events.writer_xid`, 0018_notifications.sql). Every committed transaction becomes visible
between exactly one pair of consecutive reads, so nothing is missed and nothing sent twice,
whatever order transactions commit in. Ids would not do: a transaction can draw a smaller id
than another and commit after it.

A read returns at most `limit` events, in id order (the order of one job's events: its writes
take the job's row lock in turn). When there are more, the cursor also holds the snapshot the
page was read with (`upto`) and the last id sent, and the next read goes on with the same set.

Each read is one statement, so that the events and the snapshot it returns are of one moment.
Run under db.scope.as_user, it returns only what the policies let that user see.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .connection import database
from .queries import parse_uuid

# A pg_snapshot as text: xmin:xmax:xip,xip,...
_SNAPSHOT = re.compile(r"\d{1,20}:\d{1,20}:(\d{1,20}(,\d{1,20}){0,999})?")
# How far behind the database a cursor may be, in transactions begun since (xmax, which nothing
# holds back): reading from further back scans that many transactions' events, which a live view
# never needs (it starts again from now).
MAX_CURSOR_AGE_XIDS = 10_000_000
# A snapshot that sees no transaction: with it as `seen`, a page is everything its `upto` sees
# (the positions within a job's history).
NOTHING_SEEN = "1:1:"
EVENT_COLUMNS = (
    "id",
    "job_id",
    "event",
    "from_status",
    "to_status",
    "attempt",
    "actor_user_id",
    "worker_id",
    "details",
    "created_at",
)

# The events and the snapshot come from one statement: what it read and the moment it read it.
# psycopg2 puts the values in the text, so the planner sees the filters left out as NULL and
# drops them (the job's own index, or the one on writer_xid for every job).
_HISTORY = """
WITH now AS (SELECT pg_current_snapshot()::text AS snapshot)
SELECT now.snapshot, false,
       e.id, e.job_id, e.event, e.from_status, e.to_status, e.attempt, e.actor_user_id, e.worker_id,
       e.details, e.created_at
  FROM now LEFT JOIN job_events e ON e.job_id = %(job_id)s
 ORDER BY e.id
"""
_CHANGES = """
WITH now AS (SELECT pg_current_snapshot() AS snapshot)
SELECT now.snapshot::text,
       pg_snapshot_xmax(now.snapshot)::text::numeric
         - pg_snapshot_xmax(coalesce(%(upto)s, %(seen)s)::pg_snapshot)::text::numeric > %(max_age)s,
       e.id, e.job_id, e.event, e.from_status, e.to_status, e.attempt, e.actor_user_id, e.worker_id,
       e.details, e.created_at
  FROM now LEFT JOIN LATERAL (
        SELECT * FROM job_events e
         WHERE e.writer_xid >= pg_snapshot_xmin(%(seen)s::pg_snapshot)
           AND NOT pg_visible_in_snapshot(e.writer_xid, %(seen)s::pg_snapshot)
           AND (%(job_id)s::uuid IS NULL OR e.job_id = %(job_id)s::uuid)
           AND (%(upto)s::pg_snapshot IS NULL
                OR (pg_visible_in_snapshot(e.writer_xid, %(upto)s::pg_snapshot) AND e.id > %(after_id)s))
         ORDER BY e.id
         LIMIT %(limit)s) e ON true
 ORDER BY e.id
"""


class CursorTooOld(ValueError):
    """The cursor is further behind than MAX_CURSOR_AGE_XIDS: start from now."""


@dataclass(frozen=True)
class Cursor:
    seen: str
    upto: str | None = None
    after_id: int | None = None

    def __post_init__(self) -> None:
        for snapshot in (self.seen, self.upto):
            if snapshot is not None and not _SNAPSHOT.fullmatch(snapshot):
                raise ValueError("not a snapshot of this database")
        if (self.upto is None) != (self.after_id is None):
            raise ValueError("a page's snapshot and its last id go together")


def now() -> Cursor:
    """A cursor from this moment: what is committed from now on is new to it."""
    return Cursor(database.execute_sql("SELECT pg_current_snapshot()::text").fetchone()[0])


def history(job_id: object) -> tuple[list[dict[str, Any]], Cursor]:
    """The job's events so far, oldest first, and the cursor that follows on from them."""
    key = parse_uuid(job_id)
    rows = database.execute_sql(_HISTORY, {"job_id": str(key) if key else None}).fetchall()
    return _events(rows), Cursor(rows[0][0])


def changes(
    cursor: Cursor, *, job_id: object = None, limit: int = 500, max_age_xids: int = MAX_CURSOR_AGE_XIDS
) -> tuple[list[dict[str, Any]], Cursor]:
    """The events committed since `cursor` (of one job, or of every job the session sees), at
    most `limit`, and the cursor to read on from. Raises CursorTooOld."""
    key = None if job_id is None else parse_uuid(job_id)
    if job_id is not None and key is None:
        return [], cursor
    rows = database.execute_sql(
        _CHANGES,
        {
            "seen": cursor.seen,
            "upto": cursor.upto,
            "after_id": cursor.after_id,
            "job_id": None if key is None else str(key),
            "limit": limit,
            "max_age": max_age_xids,
        },
    ).fetchall()
    if rows[0][1]:
        raise CursorTooOld("the stream's position is too far behind: start again from now")
    events = _events(rows)
    if len(events) < limit:
        return events, Cursor(cursor.upto or rows[0][0])
    return events, Cursor(cursor.seen, cursor.upto or rows[0][0], events[-1]["id"])


def _events(rows: list[tuple]) -> list[dict[str, Any]]:
    # Each row: the snapshot, the age check, then the event's columns; a LEFT JOIN that found
    # nothing gives one row of NULLs beside the snapshot.
    return [dict(zip(EVENT_COLUMNS, row[2:], strict=True)) for row in rows if row[2] is not None]
