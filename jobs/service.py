"""What services call: send and cancel a job, read its status, list jobs, read a job's history."""

from __future__ import annotations

from typing import Any

from db import queries
from middleware.options import OWNER

from .cancellation import Cancellation, cancel_job
from .errors import InvalidArguments, JobNotFound, UnknownJobType

__all__ = ["Cancellation", "cancel_job", "get_job", "job_history", "list_jobs", "send_job"]


def send_job(job_type: str, *, user_id: object, args: dict[str, Any] | None = None, delay_ms: int | None = None) -> str:
    """Sends a job for `user_id`; returns its id once its `pending` row is committed.

    Raises a JobRejected error (nothing written, nothing published) for an unknown job type,
    arguments the job can't take, an unknown user, a course outside the user's organization, or
    an unreachable database.
    """
    from actors import JOB_TYPES

    actor = JOB_TYPES.get(job_type)
    if actor is None:
        raise UnknownJobType(job_type, list(JOB_TYPES))
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise InvalidArguments(job_type, f"arguments must be an object of named values, not {args!r}")
    if delay_ms is not None and (isinstance(delay_ms, bool) or not isinstance(delay_ms, int) or delay_ms < 0):
        raise InvalidArguments(job_type, f"delay_ms must be a whole number of milliseconds >= 0, not {delay_ms!r}")
    owner = {"user_id": str(user_id), "course_id": args.get("course_id")}
    message = actor.send_with_options(kwargs=args, delay=delay_ms, **{OWNER: owner})
    return message.message_id


def get_job(job_id: object) -> dict[str, Any]:
    job = queries.get_job(job_id)
    if job is None:
        raise JobNotFound(job_id)
    return job


def list_jobs(
    *,
    status: str | None = None,
    user_id: object = None,
    organization_id: object = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    if status is not None and status not in queries.STATUSES:
        raise ValueError(f"unknown status {status!r} (one of {', '.join(queries.STATUSES)})")
    return queries.list_jobs(status=status, user_id=user_id, organization_id=organization_id, limit=limit)


def job_history(job_id: object) -> list[dict[str, Any]]:
    get_job(job_id)
    return queries.job_events(job_id)
