"""What services read, always on behalf of a user: one job, a filtered list, a job's history.

Every read runs under PostgreSQL's row-level security (db.scope): a user sees their own jobs,
an admin every job of their organization, and nobody another organization's. And of a job, a
tenant sees what is theirs, never the system's (`for_tenant`): the error's type and message, not
its stack (the server's files) nor the workers that ran it (host names, pids). Operators' views
of every tenant, whole, are in db.queries. (Re-exported by jobs.service; kept apart from the sends, so
that a reader needs neither Dramatiq nor Redis.)
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from db import queries, scope

from .errors import JobNotFound

# The system's, not the tenant's: stacks name the server's files, workers its hosts and pids.
OPERATORS_ONLY = frozenset({"error_stack", "worker_id", "worker_process"})
# (claimed_worker: the worker a refused call named without its token, 0016_worker_tokens.sql.)
OPERATORS_ONLY_DETAILS = frozenset({"lost_worker", "claimed_worker"})


# The system's own errors name the worker they lost (host:pid): a tenant reads what happened.
SYSTEM_ERRORS = {
    "WorkerLost": "the worker running the job was lost, and the job with it",
    "LeaseExpired": "the worker running the job lost its connection to the database and stopped it",
}


def for_tenant(job: dict[str, Any]) -> dict[str, Any]:
    """A job's row as a tenant (a member or an admin of its organization) may see it."""
    shown = {name: value for name, value in job.items() if name not in OPERATORS_ONLY}
    if shown.get("error_type") in SYSTEM_ERRORS and "error_message" in shown:
        shown["error_message"] = SYSTEM_ERRORS[shown["error_type"]]
    return shown


def event_for_tenant(event: dict[str, Any]) -> dict[str, Any]:
    """An event as a tenant may see it: neither the worker that wrote it nor the one it lost."""
    shown = {name: value for name, value in event.items() if name not in OPERATORS_ONLY}
    details = shown.get("details")
    if isinstance(details, dict):
        shown["details"] = {key: value for key, value in details.items() if key not in OPERATORS_ONLY_DETAILS}
        if shown["details"].get("error_type") in SYSTEM_ERRORS and "error_message" in shown["details"]:
            shown["details"]["error_message"] = SYSTEM_ERRORS[shown["details"]["error_type"]]
    return shown


def viewer(user_id: object) -> scope.Viewer:
    """Who `user_id` is, as the reads judge them: their organization and role. Raises UnknownUser
    for an id that names no user (a server checks a token's subject with it)."""
    with scope.as_user(user_id) as found:
        return found


def get_job(job_id: object, *, as_user: object) -> dict[str, Any]:
    """The job, as `as_user` may see it (for_tenant): their own, or any of their organization's
    for an admin.

    Raises JobNotFound for a job that does not exist or that the user may not see, and
    UnknownUser for an id that names no user.
    """
    with scope.as_user(as_user):
        job = queries.get_job(job_id)
    if job is None:
        raise JobNotFound(job_id)
    return for_tenant(job)


def list_jobs(
    *,
    as_user: object,
    status: str | None = None,
    user_id: object = None,
    organization_id: object = None,
    limit: int = 100,
    job_type: str | None = None,
    course_id: object = None,
    since: datetime | timedelta | None = None,
    until: datetime | None = None,
    before: str | None = None,
    after: str | None = None,
) -> list[dict[str, Any]]:
    """The newest jobs `as_user` may see, narrowed by the filters; a filter naming what the
    user may not see gives nothing. `since`, `until`, `before` and `after` (keyset pages, with
    cursors from db.queries.job_cursor) as in db.queries.list_jobs."""
    return list_page(
        as_user=as_user,
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
        next_cursor=False,
    )[0]


def list_page(
    *,
    as_user: object,
    user_id: object = None,
    organization_id: object = None,
    limit: int = 100,
    next_cursor: bool = True,
    **filters: Any,
) -> tuple[list[dict[str, Any]], str | None]:
    """list_jobs' page, and the cursor of the next one in the same direction, None when nothing
    lies beyond it (db.queries.list_page); read in one transaction. Filters as list_jobs'."""
    with scope.as_user(as_user) as viewer:
        # The policies decide what is seen; naming the user's own scope as well only lets the
        # planner take the narrowest index.
        if viewer.is_admin:
            organization_id = viewer.organization_id if organization_id is None else organization_id
        else:
            user_id = viewer.user_id if user_id is None else user_id
        filters.update(user_id=user_id, organization_id=organization_id, limit=limit)
        if next_cursor:
            rows, cursor = queries.list_page(**filters)
        else:
            rows, cursor = queries.list_jobs(**filters), None
    return [for_tenant(row) for row in rows], cursor


def show_job(
    job_id: object, *, as_user: object, after_event: int | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The job and its events, as `as_user` may see them, read in one transaction (the row
    first: the events include the one of the status it has). `after_event`: only the events
    appended after the one with that id, to follow a job as it runs."""
    with scope.as_user(as_user):
        job = queries.get_job(job_id)
        if job is None:
            raise JobNotFound(job_id)
        events = queries.job_events(job_id, after_id=after_event)
    return for_tenant(job), [event_for_tenant(event) for event in events]


def show_job_and_retry(job_id: object, *, as_user: object) -> tuple[dict[str, Any], list[dict[str, Any]], str | None]:
    """show_job, and the id of the job's retry if it was retried (retried_as), in the same
    transaction: what a job's page shows, in one."""
    with scope.as_user(as_user):
        job = queries.get_job(job_id)
        if job is None:
            raise JobNotFound(job_id)
        events = queries.job_events(job_id)
        retry = queries.retried_as(job_id)
    return for_tenant(job), [event_for_tenant(event) for event in events], retry


def find_user(value: str, *, as_user: object) -> dict[str, Any] | None:
    """The user with this email or id, if `as_user` may see them (their organization's people)."""
    with scope.as_user(as_user):
        return queries.find_user(value)


def retried_as(job_id: object, *, as_user: object) -> str | None:
    """The id of the job's retry, if it was retried and `as_user` may see the job."""
    with scope.as_user(as_user):
        return queries.retried_as(job_id)


def job_history(job_id: object, *, as_user: object) -> list[dict[str, Any]]:
    """The events of a job that `as_user` may see, oldest first; JobNotFound otherwise."""
    return show_job(job_id, as_user=as_user)[1]


def status_counts(*, as_user: object, cap: int) -> dict[str, int]:
    """How many of the jobs `as_user` may see hold each status, each counted up to `cap` + 1
    (db.queries.status_counts): a member's own jobs, an admin's organization's."""
    with scope.as_user(as_user) as viewer:
        return queries.status_counts(
            cap=cap,
            organization_id=viewer.organization_id,
            user_id=None if viewer.is_admin else viewer.user_id,
        )


def user_emails(user_ids: list[object], *, as_user: object) -> dict[str, str]:
    """The emails of these users (by id, as text) that `as_user` may see: their organization's."""
    with scope.as_user(as_user):
        return queries.user_emails(user_ids)
