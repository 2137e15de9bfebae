"""Request bodies are bounded: one larger than the server's limit is refused (413) before it is
read when it says its length, and as soon as it passes the limit when it is streamed."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .problems import problem


class BodyTooLarge(HTTPException):
    """Raised from `receive` while a handler reads a streamed body: FastAPI passes an
    HTTPException on (any other error reading the body becomes its own 400), and the problem
    handlers answer it."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _detail(limit))


def _detail(limit: int) -> str:
    return f"the request's body is larger than the {limit} bytes allowed (JOBS_API_MAX_BODY_BYTES)"


class BodyLimit:
    """Parameters:
    max_bytes(int): the largest body accepted."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await problem(413, _detail(self.max_bytes))(scope, receive, send)
            return
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, bounded, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
