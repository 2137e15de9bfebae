"""Group commit: the awaited writes of a process's threads share transactions, not guarantees.

A worker process runs many threads, and each status write is a transaction whose commit waits
for the disk. Here every write is handed to one writer thread, which runs all the writes waiting
at that moment as one statement and one transaction: one round trip and one disk flush for all
of them. Each caller still blocks until its own write is committed and gets its own answer, so a
hook returns exactly when it would have with a transaction of its own. Nothing waits on purpose:
a lone write runs at once, and writes batch up only while the previous commit is in flight.
"""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass, field
from typing import Any

import peewee
import structlog

from .connection import close_quietly, database, is_connection_error, is_transient
from .measures import BATCH_BOUNDS, Histogram

log = structlog.get_logger(__name__)


@dataclass
class _Write:
    sql: str
    params: tuple[Any, ...]
    done: threading.Event = field(default_factory=threading.Event)
    row: tuple[Any, ...] | None = None
    error: BaseException | None = None


_STOP = _Write("", ())


class GroupCommit:
    """Runs single-row `SELECT * FROM fn(...)` writes, several per transaction.

    Parameters:
      max_batch(int): most writes in one transaction.
    """

    def __init__(self, max_batch: int = 64) -> None:
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Write] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self._pid = 0
        #: Writes committed, and the transactions they took (for benchmarks and tests).
        self.writes = 0
        self.transactions = 0
        #: Writes per committed transaction (the worker's report: middleware/report.py).
        self.batch_sizes = Histogram(BATCH_BOUNDS)

    def fetchone(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...]:
        """The row of `sql`, once the transaction that ran it has committed; raises its error."""
        write = _Write(sql, params)
        self._queue.put(write)
        self._ensure_writer()
        while not write.done.wait(1.0):
            self._ensure_writer()
        if write.error is not None:
            raise write.error
        assert write.row is not None
        return write.row

    def _ensure_writer(self) -> None:
        # After a fork the writer thread of the parent does not exist in the child.
        if self._writer is not None and self._writer.is_alive() and self._pid == os.getpid():
            return
        with self._lock:
            if self._writer is None or not self._writer.is_alive() or self._pid != os.getpid():
                self._pid = os.getpid()
                self._writer = threading.Thread(target=self._run, name="group-commit", daemon=True)
                self._writer.start()

    def close(self) -> None:
        """Stops the writer once the writes queued before are done, and closes its connection.
        A write sent later starts a new writer."""
        with self._lock:
            writer = self._writer
        if writer is not None and writer.is_alive():
            self._queue.put(_STOP)
            writer.join()

    def _run(self) -> None:
        try:
            while True:
                batch = [self._queue.get()]
                while len(batch) < self.max_batch and batch[-1] is not _STOP:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                stopping = batch[-1] is _STOP
                if stopping:
                    batch.pop()
                if batch:
                    self._write(batch)
                if stopping:
                    return
        finally:
            self._close()

    def _write(self, batch: list[_Write]) -> None:
        try:
            rows = self._execute(batch)
        except BaseException as error:  # noqa: BLE001 - whatever it is, the callers must not wait forever
            if is_connection_error(error):
                # The callers retry (db.connection.reconnecting); this thread reconnects on next use.
                close_quietly()
            elif not is_transient(error) and len(batch) > 1 and isinstance(error, Exception):
                # One bad write (a value the database refuses, or that the driver can't even send)
                # must not fail the others: each is run again in a transaction of its own.
                log.warning("group_commit_split", writes=len(batch), error=str(error).strip(), write="awaited")
                for write in batch:
                    self._write([write])
                return
            # A lock or statement timeout fails the whole batch, not split: its callers try again
            # on their own connections, so that one locked row does not hold this writer again.
            self._fail(batch, error)
            return
        self.writes += len(batch)
        self.transactions += 1
        self.batch_sizes.observe(len(batch))
        for write, row in zip(batch, rows, strict=True):
            write.row = row
            write.done.set()

    def _execute(self, batch: list[_Write]) -> list[tuple[Any, ...]]:
        if len(batch) == 1:
            return [database.execute_sql(batch[0].sql, batch[0].params).fetchone()]
        # One statement (so one implicit transaction) whose branches run in order; the ordinal
        # puts each row back with its write.
        sql = " UNION ALL ".join(f"SELECT {i} AS ordinal, w.* FROM ({write.sql}) w" for i, write in enumerate(batch))
        params = tuple(p for write in batch for p in write.params)
        rows = sorted(database.execute_sql(sql, params).fetchall())
        if len(rows) != len(batch):
            raise peewee.DataError(f"group commit: {len(batch)} writes gave {len(rows)} rows")
        return [tuple(row[1:]) for row in rows]

    @staticmethod
    def _fail(batch: list[_Write], error: BaseException) -> None:
        for write in batch:
            write.error = error
            write.done.set()

    @staticmethod
    def _close() -> None:
        close_quietly()
