"""The server's database work runs on a few threads of its own, never on the event loop.

Peewee keeps one connection per thread, and the service layer (jobs.service, db.scope) is
synchronous: so each request's reads and actions run, whole, on one of `threads` threads, which
keep their connections. The server thus holds at most that many connections, however many
requests wait (PostgreSQL allows only so many for everyone). A connection the server dropped
is noticed before it is used, and one that failed is closed after, so that the thread's next
request opens a new one.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request

from db.connection import close_quietly, drop_if_dead, is_connection_error

T = TypeVar("T")


class DatabaseThreads:
    def __init__(self, threads: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="database")

    async def run(self, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """`function(*args, **kwargs)` on one of the threads; its result, or its error."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(_guarded, function, args, kwargs))

    def close(self) -> None:
        """Waits for the work under way; the threads end, and their connections with them."""
        self._executor.shutdown(wait=True)


def _guarded(function: Callable[..., T], args: tuple, kwargs: dict) -> T:
    drop_if_dead()
    try:
        return function(*args, **kwargs)
    except Exception as error:
        if is_connection_error(error):
            close_quietly()
        raise


def database_threads(request: Request) -> DatabaseThreads:
    """The app's threads (a dependency: `threads: DatabaseThreads = Depends(database_threads)`)."""
    return request.app.state.database


Threads = Annotated[DatabaseThreads, Depends(database_threads)]
