"""Every error the server answers, as an RFC 9457 problem (`application/problem+json`) whose
`detail` is one line: from one set of handlers, which map this system's errors to HTTP statuses
as the command line maps them to exit codes. No answer carries a stack trace; an error nobody
expected is logged here, and answered 500 in one line. Outside the API (the pages, /login) the
same error is an HTML page saying the same line (web.templating.error_page)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import peewee
import psycopg2
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from db.connection import is_transient
from db.excerpt import clipped
from db.redact import mask_secrets
from jobs.errors import (
    DatabaseUnavailable,
    InvalidArguments,
    JobAlreadyFinished,
    JobError,
    JobNotFound,
    JobNotPublished,
    JobNotRecorded,
    JobNotRetryable,
    JobRejected,
    KeyTaken,
    LimitExceeded,
    PermissionDenied,
    UnknownCourse,
    UnknownUser,
)

from .templating import error_page
from .tokens import InvalidToken

log = structlog.get_logger(__name__)

MEDIA_TYPE = "application/problem+json"
#: The longest `detail`: a message may quote what was sent (as an excerpt: db.excerpt).
MAX_DETAIL = 500

# The first class that an error is an instance of decides its status: subclasses first.
STATUSES: tuple[tuple[type[BaseException], int], ...] = (
    (InvalidToken, 401),
    # Every user id that reaches the service is the caller's: a token whose subject names no user.
    (UnknownUser, 401),
    (JobNotFound, 404),
    (PermissionDenied, 403),
    (JobAlreadyFinished, 409),
    (JobNotRetryable, 409),
    (KeyTaken, 409),
    (LimitExceeded, 413),
    # The pending row could not be written: the database is unreachable; nothing was sent.
    (JobNotRecorded, 503),
    (DatabaseUnavailable, 503),
    (InvalidArguments, 422),
    (UnknownCourse, 422),
    (JobRejected, 422),
    (JobError, 400),
)


class Problem(Exception):
    """An answer other than success, raised from a handler or a dependency: its status, a
    one-line detail, and headers (WWW-Authenticate on a 401)."""

    def __init__(self, status: int, detail: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers, self.extra = status, detail, headers, extra


def problem(status: int, detail: str, *, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    """The response of a problem: `type` is about:blank, so `title` is the status' own phrase."""
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": one_line(detail),
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


#: Paths whose errors are problems, not pages: the API, its description, and the scrapers' /metrics.
_MACHINES = ("/api/", "/docs", "/openapi.json", "/metrics")


def for_pages(path: str) -> bool:
    """Whether an error at `path` is answered as an HTML page (a person's browser asked)."""
    return path != "/api" and not path.startswith(_MACHINES)


def answer(
    path: str,
    status: int,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    base_url: str | None = None,
    **extra: Any,
) -> Response:
    """The error's answer at `path`: a problem under /api, a page elsewhere (whose sign-in page
    names the server's `base_url` in the commands it shows)."""
    if for_pages(path):
        return error_page(status, one_line(detail), headers=headers, base_url=base_url)
    return problem(status, detail, headers=headers, **extra)


def _answer(request: Request, status: int, detail: str, **options: Any) -> Response:
    return answer(request.url.path, status, detail, base_url=str(request.base_url).rstrip("/"), **options)


def one_line(text: str) -> str:
    """A detail on one line, its control characters escaped, at most MAX_DETAIL characters."""
    return clipped(str(text), MAX_DETAIL) if text else "no detail"


def status_of(error: BaseException) -> int:
    return next((status for kind, status in STATUSES if isinstance(error, kind)), 500)


def install(app: FastAPI) -> None:
    """Registers the handlers: ours, FastAPI's validation, Starlette's HTTP errors (404, 405,
    413), the database's, and whatever else escapes."""
    app.add_exception_handler(Problem, _problem)
    app.add_exception_handler(JobNotPublished, _not_published)
    app.add_exception_handler(JobError, _job_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(peewee.PeeweeException, _database_error)
    app.add_exception_handler(psycopg2.Error, _database_error)
    # Not a handler for Exception: Starlette answers with it, then raises the error again to the
    # server, which prints its traceback. CatchAll answers and logs, once.
    app.add_middleware(CatchAll)


async def _problem(request: Request, error: Problem) -> Response:
    return _answer(request, error.status, error.detail, headers=error.headers, **error.extra)


async def _job_error(request: Request, error: JobError) -> Response:
    status = status_of(error)
    headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if status == 401 else None
    if status == 503:
        headers = {"Retry-After": "5"}
    return _answer(request, status, str(error), headers=headers)


async def _not_published(request: Request, error: JobNotPublished) -> JSONResponse:
    """The jobs are recorded and will be sent when the broker is back (reconcile): accepted, not
    refused, so that a client doesn't send them again. Their ids say which."""
    return JSONResponse(
        {"job_ids": error.job_ids, "published": False, "detail": one_line(str(error))},
        status_code=202,
    )


async def _invalid_request(request: Request, error: RequestValidationError) -> Response:
    return _answer(request, 422, validation_detail(error.errors()))


def validation_detail(errors: Any) -> str:
    """The first of pydantic's errors, as `where: what` (`query parameter limit: Input should be
    less than or equal to 1000`), never the input itself; and how many more there are."""
    errors = list(errors)
    if not errors:
        return "the request is not valid"
    first = errors[0]
    where = _location(first.get("loc", ()))
    what = first.get("msg", "not valid")
    if first.get("type") == "json_invalid":
        # Its location is ("body", offset): where in the text the parser gave up.
        offset = first.get("loc", ("body", "?"))[-1]
        where = "body"
        what = f"not valid JSON ({first.get('ctx', {}).get('error', 'malformed')} at character {offset})"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {what}{more}" if where else f"{what}{more}"


def _location(loc: Any) -> str:
    parts = [str(part) for part in loc]
    if not parts:
        return ""
    kind, rest = parts[0], parts[1:]
    names = {"query": "query parameter", "path": "path parameter", "header": "header", "cookie": "cookie"}
    if kind in names:
        return f"{names[kind]} {'.'.join(rest)}"
    if kind == "body":
        # Tags of a union's branches are pydantic's, not the client's: left out.
        return "body" + "".join(
            f"[{part}]" if part.isdigit() else f".{part}" for part in rest if part not in ("one", "batch")
        )
    return ".".join(parts)


async def _http_error(request: Request, error: HTTPException) -> Response:
    detail = error.detail if isinstance(error.detail, str) else HTTPStatus(error.status_code).phrase
    if error.status_code == 404 and detail == "Not Found":
        detail = f"no such path: {request.url.path[:100]}"
    elif error.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path[:100]}"
    elif error.status_code == 400 and detail == "There was an error parsing the body":
        # FastAPI's answer to a body json.loads can't take, nested too deep among them.
        detail = "the body could not be parsed as JSON (malformed, or nested too deep)"
    return _answer(request, error.status_code, detail, headers=getattr(error, "headers", None))


async def _database_error(request: Request, error: Exception) -> Response:
    if is_transient(error):
        text = mask_secrets(" ".join(str(error).split()))
        log.warning("database_unreachable", path=request.url.path, error=clipped(text))
        return answer(
            request.url.path, 503, "the database is unreachable or busy: try again", headers={"Retry-After": "5"}
        )
    return await _unexpected(request, error)


async def _unexpected(request: Request, error: Exception) -> Response:
    _log_unexpected(request.method, request.url.path, error)
    return _answer(request, 500, "internal error: the server's log says more")


def _log_unexpected(method: str, path: str, error: BaseException) -> None:
    # The stack goes to the server's log (without locals: see middleware.log_format), never to the client.
    log.error("request_failed", method=method, path=path, exc_info=error)


class CatchAll:
    """The last handler: an error no other handler took is logged, with its stack, and answered
    500 in one line (or, when the answer had begun, the connection is ended)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as error:  # noqa: BLE001 - every error is answered in one line
            _log_unexpected(scope.get("method", ""), scope.get("path", ""), error)
            if started:
                raise
            response = answer(scope.get("path", ""), 500, "internal error: the server's log says more")
            await response(scope, receive, send)
