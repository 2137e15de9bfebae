"""The database handle, and the retry policy of the writes that must not be lost."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

import peewee
import structlog

log = structlog.get_logger(__name__)

T = TypeVar("T")

# Peewee opens one connection per thread on first use; worker threads keep theirs open and close
# it on shutdown (see middleware.connections).
database = peewee.PostgresqlDatabase(None, autoconnect=True)

# Errors of the connection, not of the statement: worth a reconnect and another try.
CONNECTION_ERRORS = (peewee.OperationalError, peewee.InterfaceError)


class DatabaseUnavailable(Exception):
    """The database could not be reached before the deadline."""


def configure(url: str) -> None:
    database.init(url)


def pgcode(error: BaseException) -> str | None:
    """The SQLSTATE of a database error, whether or not Peewee wrapped it."""
    for candidate in (error, *(error.args[:1] if error.args else ()), error.__cause__, error.__context__):
        code = getattr(candidate, "pgcode", None)
        if code:
            return code
    return None


def reconnecting(operation: Callable[[], T], *, what: str, deadline_s: float) -> T:
    """Runs `operation` until it succeeds, reconnecting after connection errors.

    Every operation passed here must be safe to repeat: a reply lost after the commit means
    the second try finds its own work done (the transition functions recognise that).
    """
    give_up_at = time.monotonic() + deadline_s
    delay = 0.05
    for attempt in range(1, 1_000_000):
        try:
            return operation()
        except CONNECTION_ERRORS as error:
            # A dropped connection stays broken in this thread until it is closed here.
            try:
                database.close()
            except peewee.PeeweeException:
                pass
            remaining = give_up_at - time.monotonic()
            if remaining <= 0:
                raise DatabaseUnavailable(f"{what}: database unreachable ({error})") from error
            log.warning("database_unreachable", what=what, attempt=attempt, error=str(error).strip())
            time.sleep(min(delay * (1 + random.random()), remaining))
            delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")
