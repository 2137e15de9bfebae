"""Server-Sent Events: a job's transitions and progress as they are committed
(/api/jobs/{id}/stream, which ends with the job), or those of every job the caller sees
(/api/stream).

Messages: `event: job` (a job's state and progress now: draw it over what was drawn), `event:
event` (one event of a job's history, with its position as the SSE `id`), and, on a job's
stream, `event: end` once the job has ended (close the EventSource, or it connects again). A
client that connects again with `Last-Event-ID` (EventSource does it by itself) gets every
event after that one, once.

What a stream sends is read as its caller (jobs.live.Feed, under row-level security for a user),
when the database announces a change (web.hub), and at least every JOBS_API_KEEPALIVE_S: a
comment line then keeps proxies from closing an idle stream, and finds a client that left.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import date, datetime
from typing import Annotated
from uuid import UUID

import structlog
from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse

from db.errors import JobError
from db.feed import CursorTooOld
from db.queries import parse_uuid
from jobs.errors import JobNotFound
from jobs.live import Feed, Message, Viewer

from .. import positions
from ..auth import AnyCaller, Caller
from ..database import Threads
from ..hub import EVERYONE, Audience
from ..problems import Problem

log = structlog.get_logger(__name__)

router = APIRouter(tags=["streams"])

# How long EventSource waits before it connects again after the connection drops.
RETRY_MS = 1_000
_STREAM = {200: {"content": {"text/event-stream": {}}, "description": "a stream of Server-Sent Events"}}


@router.get("/jobs/{job_id}/stream", responses=_STREAM, response_class=StreamingResponse)
async def job_stream(
    job_id: str,
    request: Request,
    caller: AnyCaller,
    threads: Threads,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """The job's state, its history (or what came after `Last-Event-ID`), then its transitions
    and progress as they happen, until it ends. 404 for a job the caller may not see."""
    return await _open(request, caller, threads, job_id, last_event_id)


@router.get("/stream", responses=_STREAM, response_class=StreamingResponse)
async def every_job_stream(
    request: Request,
    caller: AnyCaller,
    threads: Threads,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """The transitions and progress of every job the caller may see, from now on (or from
    `Last-Event-ID`)."""
    return await _open(request, caller, threads, None, last_event_id)


async def _open(
    request: Request, caller: Caller, threads: Threads, job_id: str | None, last_event_id: str | None
) -> StreamingResponse:
    secret, keepalive_s = request.app.state.settings.secret, request.app.state.settings.keepalive_s
    if job_id is not None:
        # As notifications name it (web.hub matches ids as text): an id in capitals is the same job.
        key = parse_uuid(job_id)
        if key is None:
            raise JobNotFound(job_id)
        job_id = str(key)
    # A position is good only on the stream it came from, for the caller it was given to.
    scope = f"{caller.name}|{job_id or '*'}"
    try:
        cursor = None if last_event_id is None else positions.decode(last_event_id, secret, scope)
    except positions.BadPosition as error:
        raise Problem(400, str(error)) from None
    viewer = Viewer(operator=True) if caller.is_operator else Viewer(user_id=caller.user_id)
    live = Feed(viewer, job_id=job_id, cursor=cursor)
    hub = request.app.state.hub
    # Before the first read: what is committed after it wakes this stream.
    subscription = hub.subscribe(job_id, _audience(caller))
    try:
        first = await threads.run(live.open)
    except CursorTooOld as error:
        hub.unsubscribe(subscription)
        raise Problem(410, f"{error} (connect without Last-Event-ID)") from None
    except BaseException:
        hub.unsubscribe(subscription)
        raise

    async def messages() -> AsyncIterator[str]:
        try:
            yield f"retry: {RETRY_MS}\n\n"
            batch = first
            while True:
                yield "".join(_sse(message, secret, scope) for message in batch)
                if live.finished:
                    yield "event: end\ndata: {}\n\n"
                    return
                try:
                    await asyncio.wait_for(subscription.woken.wait(), keepalive_s)
                except TimeoutError:
                    yield ": keepalive\n\n"
                subscription.woken.clear()
                try:
                    batch = await threads.run(live.read, subscription.take_progressed())
                except JobError as error:  # the user is gone, the database is down: connect again
                    log.warning("stream_ended", caller=caller.name, job_id=job_id, error=str(error))
                    return
        finally:
            hub.unsubscribe(subscription)

    return StreamingResponse(
        messages(),
        media_type="text/event-stream",
        # Not cached, not buffered by a proxy: each message goes out as it is written.
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _plain(value: object) -> str:
    """What json.dumps can't write, as FastAPI's jsonable_encoder writes it (the API's other
    answers): a moment in ISO 8601, an id as text. Not jsonable_encoder itself: a pass of Python
    over every value of every message, a fifth of a busy stream's work."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not something a stream sends")


def _audience(caller: Caller) -> Audience:
    """Whose jobs wake the caller's stream of every job (web.hub): only a hint of what to read,
    which the caller then reads as themselves."""
    if caller.is_operator:
        return EVERYONE
    organization_id = str(caller.organization_id)
    return Audience(organization_id) if caller.is_admin else Audience(organization_id, str(caller.user_id))


def _sse(message: Message, secret: bytes, scope: str) -> str:
    # One line of JSON (json.dumps escapes the newlines of a reason or an error): a value can
    # never start a field of its own.
    data = json.dumps(message.data, separators=(",", ":"), default=_plain)
    if message.cursor is None:
        return f"event: {message.kind}\ndata: {data}\n\n"
    return f"event: {message.kind}\nid: {positions.encode(message.cursor, secret, scope)}\ndata: {data}\n\n"
