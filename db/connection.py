"""The database handle, its limits, and the retry policy of the writes that must not be lost."""

from __future__ import annotations

import os
import random
import select
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import peewee
import psycopg2
import structlog

from . import stored_json, worker_token
from .errors import DatabaseUnavailable, InvalidDatabaseUrl
from .redact import mask_secrets

log = structlog.get_logger(__name__)

T = TypeVar("T")


# Errors of the connection or the server, not of the statement: worth a reconnect and another
# try. Class 08 is "connection exception"; 57P01-57P03: the server shut down or is starting.
CONNECTION_ERRORS = (peewee.OperationalError, peewee.InterfaceError)
_CONNECTION_CODES = ("57P01", "57P02", "57P03")
# The statement gave way, and the same statement may well pass a moment later: a lock or
# statement timeout, a deadlock or a serialization failure, a server that is read-only for now
# (a standby during a failover), or out of resources (class 53: memory, disk, connections).
_TRANSIENT_CODES = ("55P03", "57014", "40001", "40P01", "25006")
_TRANSIENT_CLASSES = ("53",)


class _Database(peewee.PostgresqlDatabase):
    """Peewee's database (one connection per thread), which also knows each thread's connection,
    so that another thread can end it (interrupt). Weakly: a thread that ends without closing its
    connection leaves it to be collected and closed, as Peewee alone would."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._by_thread: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
        # Held while a connection is closed, and while another thread ends one: the socket it
        # shuts down can't be closed (and its number given to another) meanwhile.
        self.registry_lock = threading.Lock()

    def _connect(self) -> Any:
        conn = self.open_unshared()
        with self.registry_lock:
            self._by_thread[threading.get_ident()] = conn
        return conn

    def open_unshared(self) -> Any:
        """A new autocommit connection, as Peewee's own but held by no thread (the group commit's).
        This process's worker token is among its options (db/worker_token.py): presented in the
        startup packet, so never in a statement's text. Built per connection, not kept in
        connect_params: a forked child presents its own."""
        params = dict(self.connect_params)
        params["options"] = " ".join(filter(None, (params.get("options"), worker_token.startup_option())))
        conn = self._adapter.connect(self, **params)
        conn.autocommit = True
        return conn

    def _close(self, conn: Any) -> None:
        with self.registry_lock:
            if self._by_thread.get(threading.get_ident()) is conn:
                del self._by_thread[threading.get_ident()]
            super()._close(conn)

    def connection_of(self, thread_id: int) -> Any:
        return self._by_thread.get(thread_id)


# Peewee opens one connection per thread on first use; worker threads keep theirs open and close
# it on shutdown (see middleware.status).
database = _Database(None, autoconnect=True)
# Every connection of the process reads JSON that Python can't (nested too deep) as a marker,
# not as an error that fails the read.
stored_json.register()


@dataclass(frozen=True)
class Limits:
    """What bounds every statement and connection, so that one locked row or one half-open
    connection can't stall a process's writes for ever (README: configuration)."""

    connect_timeout_s: int = 3
    statement_timeout_ms: int = 30_000
    lock_timeout_ms: int = 5_000
    idle_in_transaction_timeout_ms: int = 60_000
    #: Idle seconds before the first TCP keepalive probe, and between probes (three are sent).
    keepalive_s: int = 3

    def connect_params(self) -> dict[str, Any]:
        """libpq parameters; they override the same ones in the URL."""
        return {
            "connect_timeout": self.connect_timeout_s,
            "keepalives": 1,
            "keepalives_idle": self.keepalive_s,
            "keepalives_interval": self.keepalive_s,
            "keepalives_count": 3,
            # Data sent and not acknowledged for this long (a peer gone mid-statement) ends the
            # connection, which keepalives alone do not while a request is outstanding.
            "tcp_user_timeout": self.keepalive_s * 4 * 1000,
            "options": (
                f"-c statement_timeout={self.statement_timeout_ms}"
                f" -c lock_timeout={self.lock_timeout_ms}"
                f" -c idle_in_transaction_session_timeout={self.idle_in_transaction_timeout_ms}"
            ),
        }


def configure(url: str, limits: Limits | None = None) -> None:
    database.init(url, **(limits or Limits()).connect_params())


def connect(url: str, limits: Limits | None = None) -> Any:
    """A psycopg2 connection of its own to `url`, outside Peewee's (migrations, the seed, an
    operator's cancellation), bounded by `limits` if given. libpq quotes a malformed URL in its
    error, password and all: the error is raised again, masked."""
    try:
        return psycopg2.connect(url, **(limits.connect_params() if limits else {}))
    except psycopg2.Error as error:
        # On one line: libpq adds a hint on a line of its own.
        text = mask_secrets(" ".join(str(error).split()))
        if isinstance(error, psycopg2.ProgrammingError):  # "invalid dsn: ..."
            raise InvalidDatabaseUrl(text) from None
        raise DatabaseUnavailable(text) from None


@contextmanager
def transaction(url: str, limits: Limits | None = None) -> Iterator[Any]:
    """A cursor in one transaction on a connection of its own (`connect`): committed when the
    block ends, rolled back if it raises; the connection closed either way."""
    conn = connect(url, limits)
    try:
        with conn, conn.cursor() as cursor:
            yield cursor
    finally:
        conn.close()


def pgcode(error: BaseException) -> str | None:
    """The SQLSTATE of a database error, whether or not Peewee wrapped it."""
    for candidate in (error, *(error.args[:1] if error.args else ()), error.__cause__, error.__context__):
        code = getattr(candidate, "pgcode", None)
        if code:
            return code
    return None


def is_connection_error(error: BaseException) -> bool:
    """The connection is gone or unusable: close it and open another."""
    if isinstance(error, peewee.InterfaceError):
        return True
    if not isinstance(error, peewee.OperationalError):
        return False
    code = pgcode(error)
    # No code: the client library itself lost the connection (refused, reset, closed).
    return code is None or code.startswith("08") or code in _CONNECTION_CODES


def is_transient(error: BaseException) -> bool:
    """Worth trying again: the connection failed, or the statement gave way to another."""
    if is_connection_error(error):
        return True
    code = pgcode(error) if isinstance(error, peewee.DatabaseError) else None
    return code is not None and (code in _TRANSIENT_CODES or code[:2] in _TRANSIENT_CLASSES)


def close_quietly() -> None:
    """Closes this thread's connection, which stays broken after an error until it is closed."""
    try:
        database.close()
    except peewee.PeeweeException:
        pass


def drop_if_dead() -> None:
    """Closes this thread's connection if the server has dropped it: it would fail the next
    statement, and stay broken until closed. An idle connection has nothing to read unless the
    server ended it (pg_terminate_backend, a restart: a last message, then end of file), so one
    poll of its socket tells, without a round trip."""
    if database.is_closed():
        return
    conn = database.connection()
    try:
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN)
        dropped = bool(conn.closed) or bool(poller.poll(0))
    except (OSError, ValueError):
        dropped = True
    if dropped:
        close_quietly()


def interrupt(thread_id: int) -> bool:
    """Ends the connection of another thread, so that a statement it waits on returns (with a
    connection error) instead of blocking it in C code, where no exception can reach it. False
    when the thread has no open connection."""
    with database.registry_lock:
        conn = database.connection_of(thread_id)
        try:
            if conn is None or conn.closed:
                return False
            # A duplicate of its socket: shutting it down ends the connection, not our descriptor.
            with socket.socket(fileno=os.dup(conn.fileno())) as sock:
                sock.shutdown(socket.SHUT_RDWR)
        except Exception:  # noqa: BLE001 - closed meanwhile, or not a socket: nothing to end
            return False
    return True


def reconnecting(operation: Callable[[], T], *, what: str, deadline_s: float) -> T:
    """Runs `operation` until it succeeds, reconnecting after connection errors and trying again
    after statements that gave way (is_transient); any other error is raised at once.

    Every operation passed here must be safe to repeat: a reply lost after the commit means
    the second try finds its own work done (the transition functions recognise that).
    """
    give_up_at = time.monotonic() + deadline_s
    delay = 0.05
    for attempt in range(1, 1_000_000):
        try:
            return operation()
        except (peewee.DatabaseError, peewee.InterfaceError) as error:
            if not is_transient(error):
                raise
            if is_connection_error(error):
                close_quietly()
            remaining = give_up_at - time.monotonic()
            if remaining <= 0:
                raise DatabaseUnavailable(
                    f"{what}: database unreachable ({mask_secrets(str(error).strip())})"
                ) from error
            log.warning(
                "database_unreachable" if is_connection_error(error) else "statement_gave_way",
                what=what,
                attempt=attempt,
                error=mask_secrets(str(error).strip()),
            )
            time.sleep(min(delay * (1 + random.random()), remaining))
            delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")
