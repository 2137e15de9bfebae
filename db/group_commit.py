"""Group commit: the awaited writes of a process's threads share transactions, not guarantees.

A worker process runs many threads, and each status write is a transaction whose commit waits
for the disk. Here a write that finds no commit in flight runs at once, on the calling thread,
alone: no other thread is woken, and an idle database answers it as fast as a transaction of its
own. Writes that arrive while a commit is in flight wait behind it; when it ends, the first of
them runs all of them (up to `max_batch`) as one statement and one transaction, on the calling
thread too: one round trip and one disk flush for all. Each caller still blocks until its own
write is committed and gets its own answer, so a hook returns exactly when it would have with a
transaction of its own. Nothing waits on purpose.

The batches run on one connection of the group commit's own, never on a thread's connection (a
job's code may have left a transaction open there, and a write run inside it would not be
committed when its caller is told it is).
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import peewee
import structlog

from .connection import database, is_connection_error, is_transient
from .measures import BATCH_BOUNDS, Histogram

log = structlog.get_logger(__name__)

#: How often a waiting write looks whether the writes ahead of it still move (see _follow).
_CHECK_S = 1.0


@dataclass(eq=False)
class _Write:
    sql: str
    params: tuple[Any, ...]
    #: Set once the write is committed or failed, or once its thread is to lead `batch`.
    done: threading.Event = field(default_factory=threading.Event)
    row: tuple[Any, ...] | None = None
    error: BaseException | None = None
    #: The writes this write's thread runs (its own first), when it leads.
    batch: list[_Write] | None = None


class LeaderInterrupted(peewee.OperationalError):
    """The thread that ran a batch was interrupted (an asynchronous exception: TimeLimit, an
    abort) before it knew the batch's outcome: its other writes are tried again, each on its own
    caller's connection (a connection error, to db.connection.reconnecting; the writes are
    idempotent)."""


class GroupCommit:
    """Runs single-row `SELECT * FROM fn(...)` writes, several per transaction when they wait
    together.

    Parameters:
      max_batch(int): most writes in one transaction.
    """

    def __init__(self, max_batch: int = 64) -> None:
        self.max_batch = max_batch
        self._lock = threading.Lock()
        #: Whether a thread leads (runs a batch, or is about to): the others queue behind it.
        self._busy = False
        self._queue: list[_Write] = []
        #: Batches begun and ended: a waiting write tells a stalled leader from a slow one.
        self._progress = 0
        self._in_flight = False
        self._conn: Any = None
        self._pid = 0
        #: Writes committed, and the transactions they took (for benchmarks and tests).
        self.writes = 0
        self.transactions = 0
        #: Writes per committed transaction (the worker's report: middleware/report.py).
        self.batch_sizes = Histogram(BATCH_BOUNDS)

    def fetchone(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...]:
        """The row of `sql`, once the transaction that ran it has committed; raises its error."""
        write = _Write(sql, params)
        with self._lock:
            if self._busy:
                self._queue.append(write)
            else:
                self._busy = True
                write.batch = [write]
        if write.batch is None:
            self._follow(write)
        if write.batch is not None:
            self._lead(write)
        if write.error is not None:
            raise write.error
        assert write.row is not None
        return write.row

    def queued(self) -> int:
        """Writes waiting behind the one in flight (for tests)."""
        with self._lock:
            return len(self._queue)

    def close(self) -> None:
        """Closes the group commit's connection (the worker stops; every write is done). A
        write sent later opens another."""
        with self._lock:
            if not self._busy:
                self._drop_connection()

    def _follow(self, write: _Write) -> None:
        """Waits until `write` is done, or handed a batch to lead. A leader whose thread was
        interrupted between two of its steps could leave the others waiting: a write that sees
        no batch in flight and no progress for two looks takes the lead itself."""
        seen, stalled = -1, 0
        while not write.done.wait(_CHECK_S):
            with self._lock:
                if write.done.is_set() or write.batch is not None:
                    break
                if self._progress != seen or self._in_flight:
                    seen, stalled = self._progress, 0
                    continue
                stalled += 1
                if stalled < 2:
                    continue
                log.warning("group_commit_leader_lost", queued=len(self._queue), write="awaited")
                self._queue.remove(write)
                write.batch = [write, *self._queue[: self.max_batch - 1]]
                del self._queue[: self.max_batch - 1]
                self._busy = True
                return

    def _lead(self, write: _Write) -> None:
        batch = write.batch
        assert batch is not None
        try:
            self._in_flight = True
            self._progress += 1
            self._write(batch)
        except BaseException:
            # An interruption landed in this thread: the batch's outcome is unknown, and so is
            # the connection's state. Its own write raises the interruption (awaited deals with
            # it); the others are tried again.
            self._drop_connection()
            for other in batch:
                if other is not write and not other.done.is_set():
                    other.error = LeaderInterrupted("group commit: the thread that ran this write was interrupted")
                    other.done.set()
            raise
        finally:
            self._in_flight = False
            self._progress += 1
            self._hand_over()

    def _hand_over(self) -> None:
        """The writes that queued meanwhile go to the first of them, which leads them next."""
        with self._lock:
            if not self._queue:
                self._busy = False
                return
            batch = self._queue[: self.max_batch]
            del self._queue[: self.max_batch]
            leader = batch[0]
            leader.batch = batch
        leader.done.set()

    def _write(self, batch: list[_Write]) -> None:
        try:
            rows = self._execute(batch)
        except Exception as error:  # noqa: BLE001 - whatever it is, the callers must not wait forever
            if is_connection_error(error):
                # The callers retry (db.connection.reconnecting); the next batch reconnects.
                self._drop_connection()
            elif not is_transient(error) and len(batch) > 1:
                # One bad write (a value the database refuses, or that the driver can't even send)
                # must not fail the others: each is run again in a transaction of its own.
                log.warning("group_commit_split", writes=len(batch), error=str(error).strip(), write="awaited")
                for write in batch:
                    self._write([write])
                return
            # A lock or statement timeout fails the whole batch, not split: its callers try again
            # on their own connections, so that one locked row does not hold the others again.
            self._fail(batch, error)
            return
        self.writes += len(batch)
        self.transactions += 1
        self.batch_sizes.observe(len(batch))
        for write, row in zip(batch, rows, strict=True):
            write.row = row
            write.done.set()

    def _execute(self, batch: list[_Write]) -> list[tuple[Any, ...]]:
        with peewee.__exception_wrapper__:
            with self._connection().cursor() as cursor:
                if len(batch) == 1:
                    cursor.execute(batch[0].sql, batch[0].params)
                    return [cursor.fetchone()]
                # One statement (so one implicit transaction) whose branches run in order; the
                # ordinal puts each row back with its write.
                sql = " UNION ALL ".join(
                    f"SELECT {i} AS ordinal, w.* FROM ({write.sql}) w" for i, write in enumerate(batch)
                )
                cursor.execute(sql, tuple(p for write in batch for p in write.params))
                rows = sorted(cursor.fetchall())
        if len(rows) != len(batch):
            raise peewee.DataError(f"group commit: {len(batch)} writes gave {len(rows)} rows")
        return [tuple(row[1:]) for row in rows]

    def _connection(self) -> Any:
        # After a fork the parent's connection is not this process's to use.
        if self._conn is None or self._conn.closed or self._pid != os.getpid():
            self._conn, self._pid = database.open_unshared(), os.getpid()
        return self._conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._pid == os.getpid():
            with contextlib.suppress(Exception):  # a broken connection: nothing to keep
                conn.close()

    @staticmethod
    def _fail(batch: list[_Write], error: BaseException) -> None:
        for write in batch:
            write.error = error
            write.done.set()
