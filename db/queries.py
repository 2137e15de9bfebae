"""The reads the product makes: one job, a filtered list, a job's history."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from .models import JobEvent, JobStatus

STATUSES = ("pending", "active", "retrying", "completed", "failed", "cancelled")
MAX_LIMIT = 1_000


def parse_uuid(value: object) -> UUID | None:
    try:
        return value if isinstance(value, UUID) else UUID(str(value))
    except ValueError:
        return None


def get_job(job_id: object) -> dict[str, Any] | None:
    key = parse_uuid(job_id)
    if key is None:
        return None
    return JobStatus.select().where(JobStatus.job_id == key).dicts().first()


def list_jobs(
    *,
    status: str | None = None,
    user_id: object = None,
    organization_id: object = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The newest jobs matching the filters; a filter that is not an id matches nothing.
    Raises ValueError for an unknown status or a limit out of range."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"unknown status {status!r} (one of {', '.join(STATUSES)})")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be a whole number from 1 to {MAX_LIMIT}, not {limit!r}")
    query = JobStatus.select()
    if status is not None:
        query = query.where(JobStatus.status == status)
    for column, value in ((JobStatus.user_id, user_id), (JobStatus.organization_id, organization_id)):
        if value is not None:
            key = parse_uuid(value)
            if key is None:
                return []
            query = query.where(column == key)
    return list(query.order_by(JobStatus.created_at.desc()).limit(limit).dicts())


def job_events(job_id: object) -> list[dict[str, Any]]:
    key = parse_uuid(job_id)
    if key is None:
        return []
    return list(JobEvent.select().where(JobEvent.job_id == key).order_by(JobEvent.id).dicts())
