"""Worker liveness in PostgreSQL, and recovery of the jobs that a lost worker held."""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

import peewee
import structlog
from dramatiq import Broker, Message
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware

from db import transitions
from db.connection import DatabaseUnavailable, database

from .identity import process_id
from .options import OWNER, RECORDED

log = structlog.get_logger(__name__)


class Recovery(Middleware):
    """Heart-beats this worker process into PostgreSQL and, on the same thread, takes back the
    jobs of workers that stopped heart-beating.

    Dramatiq's own recovery of a dead worker's message depends on the dead worker's clock and on
    chance (RedisBroker maintenance), and no hook fires for it, so the row would stay `active`
    for ever. Here the database's clock judges: an `active` job whose worker is silent for longer
    than `window_s` goes back to `retrying` and is published again with the same job id, or ends
    `failed` once it has lost `max_deliveries` deliveries. A second copy of the message (the
    broker's own requeue) is harmless: the status guard lets one delivery start the job.

    Every `reconcile_s` it also publishes again the waiting jobs whose messages Redis lost (see
    reconcile.py).

    Parameters:
      heartbeat_s(float): how often this process heart-beats and looks for lost jobs.
      window_s(float): how long a silent worker is presumed alive.
      max_deliveries(int): deliveries a job may lose with its worker before it fails.
      reconcile_s(float): how often to look for waiting jobs missing from the broker.
    """

    def __init__(
        self, *, heartbeat_s: float = 5.0, window_s: float = 30.0, max_deliveries: int = 3, reconcile_s: float = 60.0
    ) -> None:
        self.heartbeat_s = heartbeat_s
        self.window_s = window_s
        self.max_deliveries = max_deliveries
        self.reconcile_s = reconcile_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def before_worker_boot(self, broker: Broker, worker: Any) -> None:
        # Synchronously, before any worker thread starts a job: a job whose worker is unknown
        # looks lost.
        self._beat()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(broker,), name="recovery", daemon=True)
        self._thread.start()

    def after_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.heartbeat_s + 10)
        try:
            transitions.worker_stopped(process_id())
            log.info("worker_stopped", worker=process_id(), write="awaited")
        except peewee.DatabaseError as error:
            log.warning("worker_stop_not_recorded", worker=process_id(), error=str(error).strip())

    def _beat(self) -> None:
        transitions.heartbeat(process_id(), socket.gethostname(), os.getpid())

    def _run(self, broker: Broker) -> None:
        from .reconcile import reconcile

        next_reconcile = time.monotonic() + self.reconcile_s
        try:
            while not self._stop.wait(self.heartbeat_s):
                try:
                    self._beat()
                    recover_lost_jobs(broker, window_s=self.window_s, max_deliveries=self.max_deliveries)
                    if isinstance(broker, RedisBroker) and time.monotonic() >= next_reconcile:
                        next_reconcile = time.monotonic() + self.reconcile_s
                        reconcile(broker, grace_s=self.window_s)
                except (peewee.DatabaseError, DatabaseUnavailable) as error:
                    database.close()  # reconnect on the next beat
                    log.warning("heartbeat_failed", worker=process_id(), error=str(error).strip())
        finally:
            database.close()


def recover_lost_jobs(broker: Broker, *, window_s: float, max_deliveries: int) -> list[transitions.Reaped]:
    """One pass of the reaper: returns the jobs taken back; publishes again those to retry."""
    reaped = transitions.reap(int(window_s * 1000), max_deliveries)
    for job in reaped:
        bound = log.bind(
            job_id=job.job_id, job_type=job.job_type, write="awaited", transition=f"active -> {job.outcome}"
        )
        if job.outcome == "retrying":
            broker.enqueue(resend_message(job))
            bound.warning("job_recovered")
        else:
            bound.error("job_failed_worker_lost")
    return reaped


def resend_message(job: transitions.Reaped) -> Message:
    """The job's message again, with its id, rebuilt from its row."""
    return Message(
        queue_name=job.queue,
        actor_name=job.job_type,
        args=tuple(job.args),
        kwargs=job.kwargs,
        options={RECORDED: True, OWNER: {"user_id": job.user_id, "course_id": job.course_id}},
        message_id=job.job_id,
    )
