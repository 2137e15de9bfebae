"""The API's reads, each run whole on a database thread (web.database): a user's through
jobs.reads, under row-level security and shaped for a tenant (no stacks, no hosts); an
operator's through db.queries, every tenant and whole. Which one is decided here, once, by who
is calling: never by a parameter of the request."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from db import queries
from db.connection import database
from db.excerpt import token
from jobs import reads
from jobs.errors import JobNotFound, UnknownJobType

from ..auth import Caller
from ..problems import Problem

#: Workers silent for longer than this are left out unless asked for (as `jobctl workers`).
RECENT_WORKERS = timedelta(hours=1)


def job_json(job: dict[str, Any]) -> dict[str, Any]:
    """A job as the API returns it: the row as the caller may see it, with its queue's public
    name (a delayed job is recorded in Dramatiq's delay queue, `default.DQ`)."""
    queue = job.get("queue")
    return {**job, "queue": queue.removesuffix(".DQ") if queue else queue}


def jobs_page(caller: Caller, *, user: str | None, job_type: str | None, limit: int, **filters: Any) -> dict[str, Any]:
    """A page of the jobs the caller may see, newest first, and the cursor of the next one."""
    if job_type is not None:
        from actors import JOB_TYPES

        if job_type not in JOB_TYPES:
            raise UnknownJobType(job_type, list(JOB_TYPES))
    filters.update(job_type=job_type, limit=limit)
    try:
        if caller.is_operator:
            if user is not None:
                filters["user_id"] = _user_id(queries.find_user(user), user)
            rows, cursor = queries.list_page(**filters)
        else:
            if user is not None:
                filters["user_id"] = _user_id(reads.find_user(user, as_user=caller.user_id), user)
            rows, cursor = reads.list_page(as_user=caller.user_id, **filters)
    except ValueError as error:
        # A cursor of the right shape that no page made (the rest was checked by the route).
        raise Problem(422, f"query parameter before/after: {error}") from None
    return {"jobs": [job_json(row) for row in rows], "next": cursor}


def _user_id(found: dict[str, Any] | None, typed: str) -> str:
    if found is None:
        # As the command line refuses it: a filter that names no one is a mistake, not an empty list.
        raise Problem(422, f"query parameter user: no user {token(typed)}")
    return str(found["id"])


def job_with_history(caller: Caller, job_id: str) -> dict[str, Any]:
    """The job and its events, oldest first; the job names its retry (`retried_as`) as the retry
    names it (`retry_of`). JobNotFound for a job the caller may not see."""
    if caller.is_operator:
        with database.atomic():
            job = queries.get_job(job_id)
            if job is None:
                raise JobNotFound(job_id)
            events = queries.job_events(job_id)
            retry = queries.retried_as(job_id)
    else:
        job, events = reads.show_job(job_id, as_user=caller.user_id)
        retry = reads.retried_as(job_id, as_user=caller.user_id)
    return {"job": {**job_json(job), "retried_as": retry}, "events": events}


def workers(*, include_all: bool) -> dict[str, Any]:
    """The worker processes (the operators' view): their lease's state and the jobs they run."""
    rows, now, total = queries.workers(seen_within=None if include_all else RECENT_WORKERS)
    running = queries.active_jobs()
    for row in rows:
        row["state"] = _state(row, now)
        row["jobs"] = running.get(row["worker_id"], [])
    return {"workers": rows, "now": now, "not_shown": total - len(rows)}


def _state(row: dict[str, Any], now: datetime) -> str:
    """stopped (it said so), live (its lease runs), or lost (its lease ran out while it ran)."""
    if row["stopped_at"] is not None:
        return "stopped"
    return "live" if row["lease_expires_at"] > now else "lost"
