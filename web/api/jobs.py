"""/api/jobs: send, list, read, cancel and retry jobs. The handlers only check the request's
shape and say who is calling: what may be seen or done is the service's to decide (jobs.service,
jobs.reads, under row-level security), and its errors become problems (web.problems)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Query, Request, Response

from db.queries import MAX_LIMIT
from jobs import service

from ..auth import AnyCaller, Caller, UserCaller
from ..database import Threads
from ..problems import Problem
from . import reading
from .schemas import Cancelled, CancelRequest, Retried, SendBatch, SendOne, SendRequest, Sent, Status

router = APIRouter(tags=["jobs"])

CURSOR = r"^[A-Za-z0-9_-]{32}$"
_ERRORS = {
    401: {"description": "no token, or one that is expired, forged or malformed, or names no user"},
    404: {"description": "no such job, or one the caller may not see"},
}


@router.post("/jobs", status_code=201, responses={**_ERRORS, 202: {"description": "recorded, not yet published"}})
async def send(body: Annotated[SendRequest, Body()], caller: UserCaller, threads: Threads) -> Sent:
    """Sends one job (`type`, `args`, `delay_ms`, `key`) or a batch of one type (`jobs`: the
    arguments of each, `keys`), all or none, in the caller's name; their ids, in order. A key
    sent before returns the job it was sent with."""
    if isinstance(body, SendOne):
        job_id = await threads.run(
            service.send_job, body.type, user_id=caller.user_id, args=body.args, delay_ms=body.delay_ms, key=body.key
        )
        return Sent(job_ids=[job_id])
    assert isinstance(body, SendBatch)
    ids = await threads.run(
        service.send_jobs, body.type, body.jobs, user_id=caller.user_id, delay_ms=body.delay_ms, keys=body.keys
    )
    return Sent(job_ids=ids)


@router.get("/jobs", responses=_ERRORS)
async def list_jobs(
    caller: AnyCaller,
    threads: Threads,
    status: Status | None = None,
    type: Annotated[str | None, Query(max_length=200, description="a job type")] = None,
    user: Annotated[str | None, Query(max_length=320, description="a user's id or email")] = None,
    course: UUID | None = None,
    organization: UUID | None = None,
    since: Annotated[datetime | None, Query(description="created then or later (ISO 8601; UTC if no zone)")] = None,
    until: Annotated[datetime | None, Query(description="created before then (ISO 8601; UTC if no zone)")] = None,
    before: Annotated[str | None, Query(pattern=CURSOR, description="a cursor: the older jobs")] = None,
    after: Annotated[str | None, Query(pattern=CURSOR, description="a cursor: the newer jobs")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
) -> dict[str, Any]:
    """The jobs the caller may see (a member their own, an admin their organization's, an
    operator every one), newest first, in keyset pages: `next` is the cursor to pass as
    `before` (or as `after`, when paging with `after`) for the next page, null at the end."""
    if before is not None and after is not None:
        raise Problem(422, "query parameters before and after: give one of them, not both")
    return await threads.run(
        reading.jobs_page,
        caller,
        user=user,
        job_type=type,
        limit=limit,
        status=status,
        course_id=course,
        organization_id=organization,
        since=_aware(since),
        until=_aware(until),
        before=before,
        after=after,
    )


def _aware(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=timezone.utc) if moment is not None and moment.tzinfo is None else moment


@router.get("/jobs/{job_id}", responses=_ERRORS)
async def show(job_id: str, caller: AnyCaller, threads: Threads) -> dict[str, Any]:
    """The job and its history (`events`, oldest first), as the caller may see them."""
    return await threads.run(reading.job_with_history, caller, job_id)


@router.post("/jobs/{job_id}/cancel", responses={**_ERRORS, 403: {"description": "not its owner nor an admin"}})
async def cancel(
    request: Request,
    job_id: str,
    caller: AnyCaller,
    threads: Threads,
    body: Annotated[CancelRequest | None, Body()] = None,
) -> Cancelled:
    """Cancels the job: its owner or an admin of its organization may, and operators. A waiting
    job never runs; a running one is interrupted. 409 for a job already finished."""
    result = await cancel_as(request, caller, threads, job_id, body.reason if body is not None else None)
    return Cancelled(**result.__dict__)


async def cancel_as(
    request: Request, caller: Caller, threads: Threads, job_id: str, reason: str | None
) -> service.Cancellation:
    """Cancels the job as the caller: a user through row-level security, an operator as the
    administrator (recorded under the operator's name). The API's and the pages' cancel."""
    if caller.is_operator:
        system = request.app.state.settings.system
        return await threads.run(
            service.cancel_job_as_operator,
            job_id,
            caller.operator,
            reason,
            admin_url=system.admin_database_url,
            limits=system.db_limits(),
        )
    return await threads.run(service.cancel_job, job_id, caller.user_id, reason)


@router.post(
    "/jobs/{job_id}/retry",
    status_code=201,
    responses={**_ERRORS, 200: {"description": "retried before: that retry"}, 409: {"description": "not failed"}},
)
async def retry(job_id: str, caller: UserCaller, threads: Threads, response: Response) -> Retried:
    """Sends a failed or cancelled job again as a new job (`job_id`), linked to it both ways; its
    owner or an admin of its organization may. Asked again, the same retry (200)."""
    result = await threads.run(service.retry_job, job_id, caller.user_id)
    if result.outcome == "already_retried":
        response.status_code = 200
    return Retried(**result.__dict__)
