"""The reads the product makes: one job, a filtered list in keyset pages, a job's history; and
the operators' views of the workers and of the whole system."""

from __future__ import annotations

import base64
import re
import struct
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import peewee

from .connection import database
from .models import JobEvent, JobStatus, Organization, User

STATUSES = ("pending", "active", "retrying", "completed", "failed", "cancelled")
WAITING = ("pending", "retrying")
MAX_LIMIT = 1_000
# Fewer digits than this would match too many jobs to be worth a lookup.
MIN_PREFIX = 8
_HEX_PREFIX = re.compile(rf"[0-9a-f]{{{MIN_PREFIX},32}}")
_CURSOR = re.compile(r"[A-Za-z0-9_-]{32}")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def parse_uuid(value: object) -> UUID | None:
    try:
        return value if isinstance(value, UUID) else UUID(str(value))
    except ValueError:
        return None


class _Fixed:
    """A query whose shape never changes, built by peewee once, its values given at each run (as
    many as its `%s`). Building a query through peewee costs more CPU than running it (0.6 ms
    against a few tenths: BENCHMARKS.md), and a job's page runs three of these."""

    def __init__(self, query: peewee.Select) -> None:
        self.text, parameters = query.sql()
        assert not parameters, "every value of a fixed query is a placeholder"

    def dicts(self, *values: object) -> list[dict[str, Any]]:
        cursor = database.execute_sql(self.text, values)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


_VALUE = peewee.SQL("%s")
_JOB = _Fixed(JobStatus.select().where(JobStatus.job_id == _VALUE))
_EVENTS = _Fixed(JobEvent.select().where(JobEvent.job_id == _VALUE).order_by(JobEvent.id))
_EVENTS_AFTER = _Fixed(JobEvent.select().where(JobEvent.job_id == _VALUE, JobEvent.id > _VALUE).order_by(JobEvent.id))
# At most one: retry_of is unique (job_status_retry_of_idx).
_RETRY = _Fixed(JobStatus.select(JobStatus.job_id).where(JobStatus.retry_of == _VALUE))


def get_job(job_id: object) -> dict[str, Any] | None:
    key = parse_uuid(job_id)
    if key is None:
        return None
    rows = _JOB.dicts(key)  # the primary key: one row at most
    return rows[0] if rows else None


def list_jobs(
    *,
    status: str | None = None,
    user_id: object = None,
    organization_id: object = None,
    job_type: str | None = None,
    course_id: object = None,
    since: datetime | timedelta | None = None,
    until: datetime | None = None,
    before: str | None = None,
    after: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The newest jobs matching the filters, newest first; a filter that is not an id matches
    nothing.

    `since`: jobs created then or later (a timedelta counts back from the database's clock);
    `until`: jobs created before then.
    `before` / `after`: cursors (job_cursor): only the jobs that come after that one in the list
    (older) / before it (newer); with `after` alone, the `limit` newer jobs nearest to it. Keyset
    pages, so a page costs the same however deep it is.
    Raises ValueError for an unknown status, a limit out of range or a cursor not made here.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be a whole number from 1 to {MAX_LIMIT}, not {limit!r}")
    return _listed(
        status=status,
        user_id=user_id,
        organization_id=organization_id,
        job_type=job_type,
        course_id=course_id,
        since=since,
        until=until,
        before=before,
        after=after,
        limit=limit,
    )


def _listed(
    *,
    limit: int,
    status: str | None = None,
    user_id: object = None,
    organization_id: object = None,
    job_type: str | None = None,
    course_id: object = None,
    since: datetime | timedelta | None = None,
    until: datetime | None = None,
    before: str | None = None,
    after: str | None = None,
) -> list[dict[str, Any]]:
    """list_jobs, its limit already checked (list_page asks for one row more than a page)."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"unknown status {status!r} (one of {', '.join(STATUSES)})")
    keys = []
    for value in (user_id, organization_id, course_id):
        key = None if value is None else parse_uuid(value)
        if value is not None and key is None:
            return []
        keys.append(key)
    # Each filter given adds its condition; the values go with the statement, in the order of
    # their placeholders, and the statement of each combination of filters is built once.
    given = {
        "status": status,
        "job_type": job_type,
        "user_id": keys[0],
        "organization_id": keys[1],
        "course_id": keys[2],
        "since_ago": since if isinstance(since, timedelta) else None,
        "since": None if isinstance(since, timedelta) else since,
        "until": until,
        "before": None if before is None else _position(before),
        "after": None if after is None else _position(after),
    }
    shape = tuple(name for name, value in given.items() if value is not None)
    values: list[object] = []
    for name in shape:
        values.extend(given[name] if name in ("before", "after") else [given[name]])
    newest_first = after is None or before is not None
    statement = _LISTS.get(shape)
    if statement is None:
        statement = _LISTS[shape] = _Fixed(_list_query(shape, newest_first=newest_first))
    rows = statement.dicts(*values, limit)
    return rows if newest_first else rows[::-1]


_LISTS: dict[tuple[str, ...], _Fixed] = {}


def _list_query(shape: tuple[str, ...], *, newest_first: bool) -> peewee.Select:
    """The list's statement for the filters named in `shape`, every value a placeholder, in the
    order of `shape`; the limit last. (Whether it reads newest first follows from the shape.)"""
    position = peewee.Tuple(JobStatus.created_at, JobStatus.job_id)
    conditions = {
        "status": JobStatus.status == _VALUE,
        "job_type": JobStatus.job_type == _VALUE,
        "user_id": JobStatus.user_id == _VALUE,
        "organization_id": JobStatus.organization_id == _VALUE,
        "course_id": JobStatus.course_id == _VALUE,
        # now(), not clock_timestamp(): a stable bound, which an index scan can start from.
        "since_ago": JobStatus.created_at >= peewee.fn.now() - _VALUE,
        "since": JobStatus.created_at >= _VALUE,
        "until": JobStatus.created_at < _VALUE,
        "before": position < peewee.Tuple(_VALUE, _VALUE),
        "after": position > peewee.Tuple(_VALUE, _VALUE),
    }
    query = JobStatus.select()
    for name in shape:
        query = query.where(conditions[name])
    order = (JobStatus.created_at, JobStatus.job_id)
    return query.order_by(*(column.desc() if newest_first else column.asc() for column in order)).limit(_VALUE)


def list_page(
    *, limit: int = 100, before: str | None = None, after: str | None = None, **filters: Any
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of list_jobs (same filters), and the cursor of the next page in the same direction
    (older, or newer with `after`), None when nothing lies beyond: the page is read with one row
    more than it shows, which says whether anything does (no count of the table, no second
    query)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be a whole number from 1 to {MAX_LIMIT}, not {limit!r}")
    rows = _listed(**filters, before=before, after=after, limit=limit + 1)
    if len(rows) <= limit:
        return rows, None
    # Newest first either way; the row beyond the page is the furthest from the cursor.
    if after is not None and before is None:
        rows = rows[1:]
        return rows, job_cursor(rows[0])
    rows = rows[:limit]
    return rows, job_cursor(rows[-1])


def job_cursor(job: dict[str, Any]) -> str:
    """An opaque position in the list of jobs: that of `job` (a row of list_jobs)."""
    micros = (job["created_at"] - _EPOCH) // timedelta(microseconds=1)
    raw = struct.pack(">q", micros) + UUID(str(job["job_id"])).bytes
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _position(cursor: str) -> tuple[datetime, str]:
    if not isinstance(cursor, str) or not _CURSOR.fullmatch(cursor):
        raise ValueError(f"not a cursor of the job list: {cursor!r}")
    raw = base64.urlsafe_b64decode(cursor + "====")
    (micros,) = struct.unpack(">q", raw[:8])
    try:
        return _EPOCH + timedelta(microseconds=micros), str(UUID(bytes=raw[8:]))
    except OverflowError:  # 64 bits hold moments no datetime can
        raise ValueError(f"not a cursor of the job list: {cursor!r}") from None


def job_ids_with_prefix(prefix: str, limit: int = 2, organization_id: object = None) -> list[str]:
    """The ids of the jobs whose id begins with these hex digits (MIN_PREFIX of them at least),
    of one organization if given, in order, `limit` at most: one range scan of the primary key
    (uuids compare as their bytes)."""
    digits = prefix.replace("-", "").lower()
    if not _HEX_PREFIX.fullmatch(digits):
        raise ValueError(f"not the beginning of a job id: {prefix!r}")
    low, high = UUID(digits.ljust(32, "0")), UUID(digits.ljust(32, "f"))
    query = JobStatus.select(JobStatus.job_id).where(JobStatus.job_id.between(low, high))
    if organization_id is not None:
        query = query.where(JobStatus.organization_id == organization_id)
    return [str(row.job_id) for row in query.order_by(JobStatus.job_id).limit(limit)]


def retried_as(job_id: object) -> str | None:
    """The id of the job's retry, if it was retried (job_status_retry_of_idx)."""
    key = parse_uuid(job_id)
    rows = [] if key is None else _RETRY.dicts(key)
    return str(rows[0]["job_id"]) if rows else None


def job_events(job_id: object, *, after_id: int | None = None) -> list[dict[str, Any]]:
    """The job's events, oldest first; `after_id`: only those appended after that one (the index
    on (job_id, id) finds them however long the history)."""
    key = parse_uuid(job_id)
    if key is None:
        return []
    return _EVENTS.dicts(key) if after_id is None else _EVENTS_AFTER.dicts(key, after_id)


def progress_of(job_ids: list[str]) -> list[dict[str, Any]]:
    """How far each of these jobs has come (those the session sees). One fixed statement: a live
    stream asks at every progress report, and building it through peewee cost more than running it."""
    keys = [str(key) for key in map(parse_uuid, job_ids) if key is not None]
    if not keys:
        return []
    cursor = database.execute_sql(_PROGRESS, (keys,))
    return [dict(zip(_PROGRESS_COLUMNS, row, strict=True)) for row in cursor.fetchall()]


_PROGRESS_COLUMNS = ("job_id", "status", "progress", "progress_message", "updated_at")
_PROGRESS = (
    "SELECT job_id, status, progress, progress_message, updated_at FROM job_status WHERE job_id = ANY(%s::uuid[])"
)


def find_user(value: str) -> dict[str, Any] | None:
    """The user with this email, or this id (what the caller may see of users)."""
    if "@" in value:
        condition = User.email == value
    else:
        key = parse_uuid(value)
        if key is None:
            return None
        condition = User.id == key
    return User.select(User.id, User.email, User.organization).where(condition).dicts().first()


def find_organization(value: str) -> dict[str, Any] | None:
    """The organization with this id, or this name."""
    key = parse_uuid(value)
    condition = Organization.id == key if key is not None else Organization.name == value
    return Organization.select(Organization.id, Organization.name).where(condition).dicts().first()


def user_emails(user_ids: list[object]) -> dict[str, str]:
    """Emails by user id (as text), of those users the caller may see."""
    keys = {key for key in map(parse_uuid, user_ids) if key is not None}
    if not keys:
        return {}
    return {str(user.id): user.email for user in User.select(User.id, User.email).where(User.id.in_(list(keys)))}


def organization_names(organization_ids: list[object]) -> dict[str, str]:
    keys = {key for key in map(parse_uuid, organization_ids) if key is not None}
    if not keys:
        return {}
    rows = Organization.select(Organization.id, Organization.name).where(Organization.id.in_(list(keys)))
    return {str(org.id): org.name for org in rows}


def workers(*, seen_within: timedelta | None) -> tuple[list[dict[str, Any]], datetime, int]:
    """The worker processes (the `workers` table: 0005, 0009), newest first; the database's clock,
    to judge their leases by; and how many rows the table holds. `seen_within`: only those whose
    last heartbeat is that recent, or that still hold an active job."""
    rows = database.execute_sql(
        "SELECT w.worker_id, w.hostname, w.pid, w.started_at, w.heartbeat_at, w.lease_expires_at,"
        "       w.stopped_at, w.broker_id, clock_timestamp(), (SELECT count(*) FROM workers)"
        "  FROM workers w"
        " WHERE %s::interval IS NULL OR w.heartbeat_at >= clock_timestamp() - %s::interval"
        "    OR EXISTS (SELECT 1 FROM job_status j WHERE j.status = 'active' AND j.worker_process = w.worker_id)"
        " ORDER BY w.started_at DESC, w.worker_id",
        (seen_within, seen_within),
    ).fetchall()
    names = (
        "worker_id",
        "hostname",
        "pid",
        "started_at",
        "heartbeat_at",
        "lease_expires_at",
        "stopped_at",
        "broker_id",
    )
    if not rows:
        now, total = database.execute_sql("SELECT clock_timestamp(), count(*) FROM workers").fetchone()
        return [], now, total
    return [dict(zip(names, row[:-2], strict=True)) for row in rows], rows[0][-2], rows[0][-1]


def active_jobs() -> dict[str, list[str]]:
    """The ids of the active jobs, by the worker process running them (the partial index of 0005)."""
    rows = database.execute_sql(
        "SELECT worker_process, job_id::text FROM job_status WHERE status = 'active'"
        " ORDER BY worker_process, updated_at"
    ).fetchall()
    running: dict[str, list[str]] = {}
    for worker, job_id in rows:
        running.setdefault(worker, []).append(job_id)
    return running


_STATUS_COUNT = (
    "SELECT %s::text, (SELECT count(*) FROM (SELECT 1 FROM job_status j"
    "                  WHERE j.status = %s"
    "                    AND (%s::uuid IS NULL OR j.organization_id = %s::uuid)"
    "                    AND (%s::uuid IS NULL OR j.user_id = %s::uuid)"
    "                  LIMIT %s) AS bounded)"
)
_STATUS_COUNTS = " UNION ALL ".join([_STATUS_COUNT] * len(STATUSES))


def status_counts(*, cap: int, organization_id: object = None, user_id: object = None) -> dict[str, int]:
    """How many jobs hold each status (of one organization, of one user, if given), each counted
    up to `cap` + 1 only: a count above `cap` means "more than `cap`". One statement, and for
    each status one index range that stops after `cap` + 1 rows (0002's index by organization and
    status, 0019's by status): never a count of the whole table. A filter that is not an id
    counts nothing."""
    org = None if organization_id is None else parse_uuid(organization_id)
    user = None if user_id is None else parse_uuid(user_id)
    if (org is None and organization_id is not None) or (user is None and user_id is not None):
        return dict.fromkeys(STATUSES, 0)
    org, user = (None if key is None else str(key) for key in (org, user))
    # psycopg2 sends the parameters as literals: the planner drops the conditions of an absent
    # filter, and plans each status with its own statistics (an index range for a rare one, the
    # first rows of any scan for a common one). One `status = s.status` over a list of statuses
    # was planned once for all of them, as a scan of the whole table.
    rows = database.execute_sql(*status_counts_statement(cap, org, user)).fetchall()
    return dict(rows)


def status_counts_statement(cap: int, organization_id: str | None, user_id: str | None) -> tuple[str, list[object]]:
    """status_counts' statement and its parameters (the tests read its plan)."""
    parameters: list[object] = []
    for status in STATUSES:
        parameters += [status, status, organization_id, organization_id, user_id, user_id, cap + 1]
    return _STATUS_COUNTS, parameters


def recoveries(*, limit: int = 20) -> list[dict[str, Any]]:
    """The newest jobs a reaper took back from a lost worker (`worker_lost`: sent again; `failed`
    with error_type WorkerLost: its deliveries ran out), newest first (0019's partial index)."""
    rows = database.execute_sql(
        "SELECT e.id, e.job_id::text, j.job_type, e.event, e.to_status, e.attempt,"
        "       e.details ->> 'lost_worker', e.details ->> 'lost_deliveries', e.created_at"
        "  FROM job_events e JOIN job_status j ON j.job_id = e.job_id"
        " WHERE e.event = 'worker_lost' OR (e.event = 'failed' AND e.details ->> 'error_type' = 'WorkerLost')"
        " ORDER BY e.id DESC LIMIT %s",
        (limit,),
    ).fetchall()
    names = (
        "id",
        "job_id",
        "job_type",
        "event",
        "to_status",
        "attempt",
        "lost_worker",
        "lost_deliveries",
        "created_at",
    )
    return [dict(zip(names, row, strict=True)) for row in rows]


def job_counts() -> tuple[list[dict[str, Any]], datetime]:
    """Jobs by type, status and (public) queue, with how many of the waiting ones are not due yet
    (a delay, a retry's backoff); and the database's clock. A pass over the whole table: an
    operator's question, not something to poll."""
    rows = database.execute_sql(
        "SELECT job_type, status, regexp_replace(queue, '[.]DQ$', '') AS public_queue, count(*),"
        "       count(*) FILTER (WHERE status IN ('pending', 'retrying') AND scheduled_for > now()), now()"
        "  FROM job_status GROUP BY job_type, status, public_queue ORDER BY job_type, status, public_queue"
    ).fetchall()
    names = ("job_type", "status", "queue", "jobs", "not_due")
    now = rows[0][-1] if rows else database.execute_sql("SELECT now()").fetchone()[0]
    return [dict(zip(names, row[:-1], strict=True)) for row in rows], now


def oldest_waiting_job() -> dict[str, Any] | None:
    """The waiting job that has been due the longest (since it was sent, or since its delay or its
    retry's backoff ran out), with that moment as `due_since`."""
    row = database.execute_sql(
        "SELECT job_id::text, job_type, status, COALESCE(scheduled_for, updated_at) AS due_since"
        "  FROM job_status WHERE status IN ('pending', 'retrying') AND COALESCE(scheduled_for, updated_at) <= now()"
        " ORDER BY due_since LIMIT 1"
    ).fetchone()
    return dict(zip(("job_id", "job_type", "status", "due_since"), row, strict=True)) if row else None
