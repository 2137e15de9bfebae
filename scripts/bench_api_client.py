"""The HTTP client of scripts/bench_api.py: keep-alive GETs and Server-Sent Events streams on
asyncio's own sockets.

Not httpx: the client shares the machine's two cores with the server it measures, and a
general-purpose client spends several times more CPU per request than the few lines of
HTTP/1.1 that uvicorn's answers need (Content-Length bodies, chunked streams).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class HttpError(Exception):
    pass


class Connection:
    """One keep-alive connection to the server, one request at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> Connection:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def _send(self, path: str, token: str, extra: str = "") -> None:
        assert self.writer is not None
        self.writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nAuthorization: Bearer {token}\r\n{extra}\r\n".encode()
        )

    async def _head(self) -> tuple[int, dict[str, str]]:
        assert self.reader is not None
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *lines = raw.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        return int(status_line.split(" ", 2)[1]), headers

    async def get(self, path: str, token: str) -> tuple[int, bytes]:
        """The status and body of GET `path`. A keep-alive connection the server closed while it
        was idle (uvicorn does after 5 s) is opened again and the request sent again, as HTTP
        clients do for a GET."""
        assert self.reader is not None
        self._send(path, token)
        try:
            status, headers = await self._head()
        except (asyncio.IncompleteReadError, ConnectionError) as error:
            if isinstance(error, asyncio.IncompleteReadError) and error.partial:
                raise
            self.close()
            await self.open()
            self._send(path, token)
            status, headers = await self._head()
        if "content-length" in headers:
            return status, await self.reader.readexactly(int(headers["content-length"]))
        raise HttpError(f"GET {path}: {status} with no Content-Length")

    async def chunks(self) -> Any:
        """The chunks of a chunked body, as they arrive, until its end."""
        assert self.reader is not None
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return
            data = await self.reader.readexactly(size + 2)
            yield data[:-2]


@dataclass
class Stream:
    """One open Server-Sent Events stream; what arrived on it, with the wall-clock time of arrival."""

    path: str
    token: str
    #: Who watches (member, admin, operator, job): what the figures are grouped by.
    kind: str = ""
    #: Each `event` message: (arrival time.time(), the event's created_at as epoch seconds).
    arrivals: list[tuple[float, float]] = field(default_factory=list)
    messages: int = 0
    ended: bool = False
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    error: str | None = None

    async def run(
        self, host: str, port: int, on_event: Callable[[Stream, dict[str, Any], float], None] | None = None
    ) -> None:
        connection = await Connection(host, port).open()
        try:
            connection._send(self.path, self.token, "Accept: text/event-stream\r\n")
            status, headers = await connection._head()
            if status != 200:
                body = await connection.reader.readexactly(int(headers.get("content-length", "0")))
                self.error = f"{status} {body[:200]!r}"
                self.opened.set()
                return
            buffer = ""
            async for chunk in connection.chunks():
                arrived = time.time()
                self.opened.set()
                buffer += chunk.decode()
                *complete, buffer = buffer.split("\n\n")
                for message in complete:
                    self._message(message, arrived, on_event)
            self.ended = True
        except (asyncio.IncompleteReadError, ConnectionError) as error:
            self.error = self.error or f"{type(error).__name__}"
        finally:
            self.opened.set()
            connection.close()

    def _message(self, text: str, arrived: float, on_event: Callable[..., None] | None) -> None:
        kind, data = None, None
        for line in text.split("\n"):
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
        if kind is None:
            return  # `retry:` and keepalive comments
        self.messages += 1
        if kind == "event" and data is not None:
            event = json.loads(data)
            self.arrivals.append((arrived, _epoch(event["created_at"])))
            if on_event is not None:
                on_event(self, event, arrived)


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()
