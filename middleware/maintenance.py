"""Every worker's periodic passes: the reaper, and the reconciliation of the rows with Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import redis
import structlog
from dramatiq import Broker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware

from db.connection import close_quietly, is_connection_error

from .identity import process_id
from .reaper import recover_lost_jobs
from .reconcile import reconcile

log = structlog.get_logger(__name__)


class Maintenance(Middleware):
    """Runs, on a thread of its own in every worker process, the reaper every `reap_s` and the
    reconciliation with Redis every `reconcile_s`.

    A pass that fails, for any reason (Redis or PostgreSQL unreachable, a bug), is logged and the
    next one runs on time: the thread lives as long as the worker. It runs apart from the
    heartbeats (middleware/lease.py), so that a slow pass never delays a lease's renewal.

    Parameters:
      reap_s(float): how often to look for the jobs of lost workers.
      window_s(float): how long the Redis consumer of a worker never recorded is presumed to
        hold its messages.
      reconcile_s(float): how often to look for waiting jobs missing from the broker (Redis only).
    """

    def __init__(self, *, reap_s: float, window_s: float, reconcile_s: float) -> None:
        self.reap_s = reap_s
        self.window_s = window_s
        self.reconcile_s = reconcile_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def before_worker_boot(self, broker: Broker, worker: Any) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(broker,), name="maintenance", daemon=True)
        self._thread.start()

    def after_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self, broker: Broker) -> None:
        # Since when each Redis consumer has been seen holding no lease (reaper.py).
        unleased: dict[str, float] = {}
        passes: list[tuple[str, float, Callable[[], object]]] = [
            (
                "reap",
                self.reap_s,
                lambda: recover_lost_jobs(broker, window_s=self.window_s, unleased=unleased),
            )
        ]
        if isinstance(broker, RedisBroker):
            passes.append(("reconcile", self.reconcile_s, lambda: reconcile(broker, grace_s=self.window_s)))
        due = {name: time.monotonic() + every for name, every, _ in passes}
        try:
            while not self._stop.wait(max(0.0, min(due.values()) - time.monotonic())):
                for name, every, run in passes:
                    if time.monotonic() >= due[name]:
                        due[name] = time.monotonic() + every
                        self._attempt(name, run)
        finally:
            close_quietly()

    @staticmethod
    def _attempt(name: str, run: Callable[[], object]) -> None:
        try:
            run()
        except Exception as error:  # noqa: BLE001 - the next pass must run whatever this one hit
            close_quietly()  # a connection broken by the error stays broken until closed
            expected = is_connection_error(error) or isinstance(error, redis.RedisError)
            (log.warning if expected else log.error)(
                "maintenance_failed",
                what=name,
                worker=process_id(),
                error=f"{type(error).__name__}: {str(error).strip()}",
                exc_info=not expected,
            )
