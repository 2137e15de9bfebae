"""The jobs pages: the list (`/`) and a job (`/jobs/{id}`), with its Cancel and Retry forms.

What may be seen or done is decided below them, as for the API (jobs.service, jobs.reads under
row-level security): the pages only show the buttons that the service would honour, and post
to it with the session's CSRF token. A job the caller may not see is a 404 page."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from db.excerpt import excerpt
from db.queries import STATUSES, job_cursor
from jobs import service

from ..api.jobs import CURSOR, cancel_as
from ..auth import AnyCaller, Caller, UserCaller
from ..database import Threads
from ..problems import Problem
from ..templating import page
from . import reading
from .layout import layout
from .timeline import timeline

router = APIRouter()

#: Jobs a page lists.
PAGE_SIZE = 50
#: The longest `user` filter: an email (RFC 5321's limit) or an id.
MAX_USER = 320
WAITING_OR_RUNNING = ("pending", "active", "retrying")
RETRYABLE = ("failed", "cancelled")


@router.get("/", response_class=HTMLResponse)
async def jobs_page(
    request: Request,
    caller: AnyCaller,
    threads: Threads,
    status: str = "",
    type: str = "",
    user: str = "",
    since: str = "",
    before: str = "",
    after: str = "",
) -> Response:
    """The jobs the caller may see, newest first, in keyset pages; live (web/static)."""
    from actors import JOB_TYPES

    filters = {"status": status, "type": type, "user": user, "since": since}
    if status and status not in STATUSES:
        raise Problem(422, f"status: {excerpt(status)} is not a status (one of {', '.join(STATUSES)})")
    if since and since not in reading.SINCE:
        raise Problem(422, f"since: {excerpt(since)} is not one of {', '.join(reading.SINCE)}")
    if user and not (caller.is_admin or caller.is_operator):
        raise Problem(403, "user: a member sees only their own jobs; admins and operators filter by user")
    if len(user) > MAX_USER:
        raise Problem(422, f"user: an email or an id, of {MAX_USER} characters at most")
    for name, cursor in (("before", before), ("after", after)):
        if cursor and not _is_cursor(cursor):
            raise Problem(422, f"{name}: not a cursor of the job list")
    if before and after:
        raise Problem(422, "before and after: give one of them, not both")
    shown = await threads.run(
        reading.jobs_view,
        caller,
        limit=PAGE_SIZE,
        user=user or None,
        job_type=type or None,
        status=status or None,
        since=reading.SINCE[since][1] if since else None,
        before=before or None,
        after=after or None,
    )
    jobs = shown["jobs"]
    kept = {name: value for name, value in filters.items() if value}
    newer = older = None
    if after:
        newer = shown["next"] and {"after": shown["next"]}
        older = jobs and {"before": job_cursor(jobs[-1])}
    else:
        older = shown["next"] and {"before": shown["next"]}
        newer = before and {"after": job_cursor(jobs[0]) if jobs else before}
    return page(
        "jobs.html",
        **layout(request, caller, shown["emails"], nav="jobs"),
        stream="/api/stream",
        jobs=jobs,
        emails=shown["emails"],
        organizations=shown["organizations"],
        counts=shown["counts"],
        count_cap=reading.COUNT_CAP,
        filters=filters,
        filtered=bool(kept),
        first_page=not (before or after),
        job_types=sorted(JOB_TYPES),
        statuses=STATUSES,
        since_choices=reading.SINCE,
        newer=newer and "/?" + urlencode({**kept, **newer}),
        older=older and "/?" + urlencode({**kept, **older}),
        this_page="/?" + urlencode(kept) if kept else "/",
    )


def _is_cursor(value: str) -> bool:
    return re.fullmatch(CURSOR, value) is not None


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
async def job_page(request: Request, job_id: str, caller: AnyCaller, threads: Threads) -> Response:
    """The job, its timeline, its progress (live) and the actions the caller may take on it; a
    404 page for a job the caller may not see, or an id that is not one."""
    shown = await threads.run(reading.job_view, caller, job_id)
    return page("job.html", **_job_context(request, caller, shown))


@router.get("/jobs/{job_id}/live", response_class=HTMLResponse)
async def job_live_parts(request: Request, job_id: str, caller: AnyCaller, threads: Threads) -> Response:
    """The parts of the job's page that change as it runs (its fields, actions and timeline),
    which the page's script swaps in when the job's stream says something happened."""
    shown = await threads.run(reading.job_view, caller, job_id)
    return page("_job_live.html", **_job_context(request, caller, shown))


def _job_context(request: Request, caller: Caller, shown: dict[str, Any]) -> dict[str, Any]:
    job = shown["job"]
    return {
        **layout(request, caller, shown["emails"], nav="jobs"),
        "stream": f"/api/jobs/{job['job_id']}/stream" if job["status"] in WAITING_OR_RUNNING else None,
        "job": job,
        "timeline": timeline(shown["events"], shown["emails"]),
        "emails": shown["emails"],
        "organizations": shown["organizations"],
        "may_cancel": job["status"] in WAITING_OR_RUNNING and _may_act(caller, job, operators=True),
        "may_retry": job["status"] in RETRYABLE
        and job.get("retried_as") is None
        and _may_act(caller, job, operators=False),
    }


def _may_act(caller: Caller, job: dict[str, Any], *, operators: bool) -> bool:
    """As the service judges it: the job's owner, an admin of its organization (the only jobs an
    admin sees), and for a cancellation an operator too."""
    if caller.is_operator:
        return operators
    return caller.is_admin or str(job["user_id"]) == str(caller.user_id)


@router.post("/jobs/{job_id}/cancel")
async def cancel(
    request: Request, job_id: str, caller: AnyCaller, threads: Threads, reason: str = Form("")
) -> Response:
    """Cancels the job (its owner, an admin of its organization, an operator; the reason is
    optional) and shows its page again."""
    result = await cancel_as(request, caller, threads, job_id, reason.strip() or None)
    return RedirectResponse(f"/jobs/{result.job_id}", status_code=303)


@router.post("/jobs/{job_id}/retry")
async def retry(job_id: str, caller: UserCaller, threads: Threads) -> Response:
    """Sends the failed or cancelled job again as a new job, and opens the new job's page."""
    result = await threads.run(service.retry_job, job_id, caller.user_id)
    return RedirectResponse(f"/jobs/{result.job_id}", status_code=303)
