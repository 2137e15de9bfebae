"""What the pages read, each run whole on a database thread (web.database): the API's reads
(web.api.reading: a tenant's under row-level security and shaped for a tenant, an operator's
whole), and what a page shows beside them: the people's emails, the organizations' names, the
status counts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from db import queries
from db.connection import database
from jobs import reads

from ..api import reading
from ..auth import Caller

#: Status counts stop here: above it a page says "1,000+" (no count of a whole table per view).
COUNT_CAP = 1_000
#: Recoveries the workers page lists.
RECOVERIES = 20


def jobs_view(caller: Caller, *, limit: int, **filters: Any) -> dict[str, Any]:
    """A page of the jobs the caller may see (web.api.reading.jobs_page's filters), the emails of
    their owners (and the caller's), the organizations' names (operators), and the status counts
    of everything the caller may see."""
    listed = reading.jobs_page(caller, limit=limit, **filters)
    people = [job["user_id"] for job in listed["jobs"]]
    if caller.is_operator:
        with database.atomic():
            emails = queries.user_emails(people)
            organizations = queries.organization_names([job["organization_id"] for job in listed["jobs"]])
            counts = queries.status_counts(cap=COUNT_CAP)
    else:
        emails = reads.user_emails([*people, caller.user_id], as_user=caller.user_id)
        organizations = {}
        counts = reads.status_counts(as_user=caller.user_id, cap=COUNT_CAP)
    return {**listed, "emails": emails, "organizations": organizations, "counts": counts}


def job_view(caller: Caller, job_id: str) -> dict[str, Any]:
    """The job and its history as the API gives them (JobNotFound for a job the caller may not
    see), with the emails of the people they name."""
    shown = reading.job_with_history(caller, job_id)
    job, events = shown["job"], shown["events"]
    people = [job["user_id"], job.get("cancelled_by"), *(event.get("actor_user_id") for event in events)]
    people = [person for person in people if person is not None]
    if caller.is_operator:
        emails = queries.user_emails(people)
        organizations = queries.organization_names([job["organization_id"]])
    else:
        emails = reads.user_emails([*people, caller.user_id], as_user=caller.user_id)
        organizations = {}
    return {**shown, "emails": emails, "organizations": organizations}


def workers_view(*, include_all: bool) -> dict[str, Any]:
    """The worker processes (web.api.reading.workers) with each one's heartbeat age and lease
    left, and the recent recoveries of lost workers' jobs."""
    with database.atomic():
        shown = reading.workers(include_all=include_all)
        recovered = queries.recoveries(limit=RECOVERIES)
    now = shown["now"]
    for worker in shown["workers"]:
        worker["heartbeat_age"] = now - worker["heartbeat_at"] if worker["heartbeat_at"] else None
        worker["lease_left"] = worker["lease_expires_at"] - now if worker["lease_expires_at"] else None
    for recovery in recovered:
        recovery["age"] = now - recovery["created_at"]
    return {**shown, "recoveries": recovered}


SINCE = {
    "1h": ("in the last hour", timedelta(hours=1)),
    "24h": ("in the last 24 hours", timedelta(hours=24)),
    "7d": ("in the last 7 days", timedelta(days=7)),
    "30d": ("in the last 30 days", timedelta(days=30)),
}
