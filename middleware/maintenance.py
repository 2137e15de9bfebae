"""Every worker's periodic passes: the reaper, the reconciliation of the rows with Redis, the
worker's report and the count of new events for /metrics, and retention."""

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

from db import metrics, prune
from db.connection import close_quietly, is_connection_error

from .identity import process_id
from .reaper import recover_lost_jobs
from .reconcile import reconcile
from .report import send_report

log = structlog.get_logger(__name__)


#: A pass: its name, how often it runs, and what it runs.
Pass = tuple[str, float, Callable[[], object]]


class Maintenance(Middleware):
    """Runs, on a thread of its own in every worker process, the reaper every `reap_s`, the
    reconciliation with Redis every `reconcile_s`, and every `reap_s` this process's report and a
    count of the events committed since the last one (db.metrics); and on a second thread,
    retention every `prune_s`.

    A pass that fails, for any reason (Redis or PostgreSQL unreachable, a bug), is logged and the
    next one runs on time: the threads live as long as the worker. They run apart from the
    heartbeats (middleware/lease.py), so that a slow pass never delays a lease's renewal; retention
    has its own, so that a long backlog to prune never delays the reaper.

    Parameters:
      reap_s(float): how often to look for the jobs of lost workers (and to report).
      window_s(float): how long the Redis consumer of a worker never recorded is presumed to
        hold its messages.
      reconcile_s(float): how often to look for waiting jobs missing from the broker (Redis only).
      prune_s(float): how often to prune the finished jobs past the database's retention
        (db.retention), a batch of `prune_batch` jobs per transaction until none is left; 0: never.
    """

    def __init__(
        self, *, reap_s: float, window_s: float, reconcile_s: float, prune_s: float = 0, prune_batch: int = 500
    ) -> None:
        self.reap_s = reap_s
        self.window_s = window_s
        self.reconcile_s = reconcile_s
        self.prune_s = prune_s
        self.prune_batch = prune_batch
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        #: The thread of the reaper's, reconcile's and the report's passes.
        self._thread: threading.Thread | None = None

    def before_worker_boot(self, broker: Broker, worker: Any) -> None:
        self._stop.clear()
        lanes = {"maintenance": self._passes(broker)}
        if self.prune_s > 0:
            lanes["retention"] = [("prune", self.prune_s, self._prune)]
        self._threads = [
            threading.Thread(target=self._run, args=(passes,), name=name, daemon=True) for name, passes in lanes.items()
        ]
        self._thread = self._threads[0]
        for thread in self._threads:
            thread.start()

    def after_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _passes(self, broker: Broker) -> list[Pass]:
        # Since when each Redis consumer has been seen holding no lease (reaper.py).
        unleased: dict[str, float] = {}
        passes: list[Pass] = [
            (
                "reap",
                self.reap_s,
                lambda: recover_lost_jobs(broker, window_s=self.window_s, unleased=unleased),
            ),
            ("report", self.reap_s, lambda: (send_report(broker), metrics.count_events(pages=50))),
        ]
        if isinstance(broker, RedisBroker):
            passes.append(("reconcile", self.reconcile_s, lambda: reconcile(broker, grace_s=self.window_s)))
        return passes

    def _prune(self) -> int:
        """Batches until none is full, or the worker stops: each its own short transaction."""
        pruned = 0
        while not self._stop.is_set():
            went = prune.prune_expired(self.prune_batch)
            pruned += went
            if went < self.prune_batch:
                break
        if pruned:
            log.info("jobs_pruned", jobs=pruned, worker=process_id())
        return pruned

    def _run(self, passes: list[Pass]) -> None:
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
