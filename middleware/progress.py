"""Progress reports: fire-and-forget writes through a bounded background writer."""

from __future__ import annotations

import threading
from typing import Any

import dramatiq
import structlog
from dramatiq import Broker
from dramatiq.middleware import Middleware

from db import transitions
from db.connection import database, reconnecting
from db.measures import Counter

from .context import current_job

log = structlog.get_logger(__name__)


class ProgressWriter:
    """Writes progress on its own thread, so that a slow database never slows a job.

    Only the newest report of each job is kept while it waits (older ones are superseded), and at
    most `capacity` jobs wait at once: past that a report is dropped and logged. Errors are
    logged, never raised into the job. A report is applied only to the attempt that made it and
    only while the job is active, so it never lands on a finished job.

    After each batch of writes the writer waits `interval_s` (unless flushed or closed), so that
    a job reporting in a tight loop costs the database, and the live views that each write
    wakes, a few writes a second, not thousands.
    """

    def __init__(self, capacity: int = 10_000, interval_s: float = 0.1) -> None:
        self.capacity = capacity
        self.interval_s = interval_s
        self._flushing = 0
        self._waiting: dict[str, tuple[int, int, str | None]] = {}
        self._writing = False
        self._closed = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        #: Reports dropped because `capacity` jobs were waiting already.
        self.dropped = Counter()

    @property
    def waiting(self) -> int:
        """Jobs whose newest report waits to be written."""
        return len(self._waiting)

    def submit(self, job_id: str, attempt: int, progress: int, message: str | None) -> bool:
        with self._cond:
            if job_id not in self._waiting and len(self._waiting) >= self.capacity:
                self.dropped.add()
                log.warning(
                    "progress_dropped",
                    job_id=job_id,
                    attempt=attempt,
                    write="fire_and_forget",
                    reason="writer queue full",
                )
                return False
            self._waiting[job_id] = (attempt, progress, message)
            if self._thread is None or not self._thread.is_alive():
                self._closed = False
                self._thread = threading.Thread(target=self._run, name="progress-writer", daemon=True)
                self._thread.start()
            self._cond.notify()
            return True

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until every report submitted so far is written (or failed); False on timeout."""
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(lambda: not self._waiting and not self._writing, timeout)
            finally:
                self._flushing -= 1

    def close(self, timeout: float | None = None) -> bool:
        flushed = self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return flushed

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._waiting or self._closed)
                    if not self._waiting:
                        return
                    batch, self._waiting, self._writing = self._waiting, {}, True
                for job_id, (attempt, progress, message) in batch.items():
                    self._write(job_id, attempt, progress, message)
                with self._cond:
                    self._writing = False
                    self._cond.notify_all()
                    # Not a sleep: a flush or a close ends the pause at once.
                    self._cond.wait_for(lambda: self._closed or self._flushing, self.interval_s)
        finally:
            database.close()

    def _write(self, job_id: str, attempt: int, progress: int, message: str | None) -> None:
        bound = log.bind(job_id=job_id, attempt=attempt, write="fire_and_forget", progress=progress)
        try:
            applied = reconnecting(
                lambda: transitions.record_progress(job_id, attempt, progress, message),
                what="record_progress",
                deadline_s=0,
            )
        except Exception as error:  # noqa: BLE001 - a progress write must never take the writer down
            bound.error("progress_write_failed", error=str(error).strip())
            return
        bound.debug("progress_written", outcome="applied" if applied else "not_active")


class ProgressMiddleware(Middleware):
    """Owns the worker's ProgressWriter and flushes it when the worker stops.

    Parameters:
      capacity(int): most jobs whose progress may wait to be written.
      interval_s(float): the pause after each batch of writes.
    """

    def __init__(self, *, capacity: int = 10_000, interval_s: float = 0.1) -> None:
        self.writer = ProgressWriter(capacity, interval_s)

    def after_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        # After the worker threads are joined, so that no report comes in behind the flush.
        if not self.writer.close(timeout=10):
            log.error("progress_not_flushed", write="fire_and_forget")


def report_progress(percent: int, message: str | None = None) -> None:
    """Records how far the running job has come (0-100), without waiting for the write."""
    if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
        raise ValueError(f"progress must be an integer from 0 to 100, not {percent!r}")
    job = current_job()
    writer = next((m.writer for m in dramatiq.get_broker().middleware if isinstance(m, ProgressMiddleware)), None)
    if writer is None:
        raise RuntimeError("the broker has no ProgressMiddleware")
    writer.submit(job.job_id, job.attempt, percent, message)
