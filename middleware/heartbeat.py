"""Heartbeats: the middleware that keeps a worker process's lease (middleware/lease.py) alive,
and watches its jobs' threads under it."""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

import structlog
from dramatiq import Broker, Message
from dramatiq.middleware import Middleware

from db import scope, transitions
from db.connection import close_quietly

from .identity import process_id
from .lease import Lease, LeaseExpired, clock
from .options import ATTEMPT, ENDED

log = structlog.get_logger(__name__)


class LeaseKeeper(Middleware):
    """Keeps this worker process's lease, and stops its jobs before the lease can run out.

    Guarantees:
      * A heartbeat thread of its own renews the lease every `heartbeat_s`, from the moment the
        worker boots; a failed heartbeat (the database unreachable, anything) is logged and tried
        again at the next beat, for as long as the worker runs. The first one records this
        process's worker token (db/worker_token.py), without which the database lets no session
        act as this worker. The lease counted is the one the database gave (at most what `jobctl
        migrate` recorded; a shorter one than asked is logged, as `lease_shortened`).
      * A job runs only while the lease is live: its thread is watched from its last before-hook
        to its first after-hook, and once the lease is no longer live a watchdog raises
        LeaseExpired into it; if a job still runs at `Lease.kill_at`, the process exits with
        status 75 (EXIT_LEASE_LOST).
      * On shutdown the process's row says it stopped, and its lease ends at once if none of its
        threads still runs a job.

    It must come last in the broker's middleware list, so that a job's thread is watched only
    once its start is recorded (the status middleware) and is no longer watched when its end is
    being written (after-hooks run in reverse): LeaseExpired never lands inside a status write.

    Parameters:
      lease(Lease): the process's lease, shared with the status middleware (which starts no job
        without it).
      heartbeat_s(float): how often the lease is renewed.
      may_act_as_users(bool): whether this worker may log in as a role that can act as a user
        (jobs_service: tests run workers in a service's process). Otherwise a worker that finds
        itself so, before its first heartbeat, never takes a lease, so runs no job, and says why
        at every beat: job code must never run where it could take a user's identity. (It does
        not exit: Dramatiq's main process waits half a minute for a worker that dies booting,
        and a supervisor would only start it again; the others take back what it holds.)
    """

    def __init__(self, lease: Lease, *, heartbeat_s: float, may_act_as_users: bool = False) -> None:
        self.lease = lease
        self.heartbeat_s = heartbeat_s
        self.may_act_as_users = may_act_as_users
        self._stop_beating = threading.Event()
        self._stop_watching = threading.Event()
        self._threads: list[threading.Thread] = []

    def before_process_message(self, broker: Broker, message: Message) -> None:
        if ATTEMPT in message.options:
            # Raises LeaseExpired if the lease is not live: the status middleware, which recorded
            # the start, records this attempt's end too.
            self.lease.watch(message.message_id)

    def after_process_message(
        self, broker: Broker, message: Message, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        message.options[ENDED] = clock()
        self.lease.unwatch(stopped=isinstance(exception, LeaseExpired))

    def after_skip_message(self, broker: Broker, message: Message) -> None:
        self.lease.unwatch(stopped=False)

    def before_worker_boot(self, broker: Broker, worker: Any) -> None:
        # Nothing here waits for the database: a worker that boots while it is unreachable keeps
        # trying, and runs no job until its first heartbeat is recorded.
        self._stop_beating.clear()
        self._stop_watching.clear()
        self.lease.open()
        self._threads = [
            threading.Thread(
                target=self._beat, args=(getattr(broker, "broker_id", None),), name="lease-heartbeat", daemon=True
            ),
            threading.Thread(target=self.lease.guard, args=(self._stop_watching,), name="lease-watchdog", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def before_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        # Jobs still waiting for a lease give up (their messages are handed back); running ones
        # finish, and the heartbeats go on until they have.
        self.lease.close()

    def after_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        release = self.lease.running() == 0
        self._stop_beating.set()
        if release:
            self._stop_watching.set()
            self.lease.disarm()
        # Otherwise a job outlived the worker's shutdown timeout: the watchdog goes on guarding
        # it, without heartbeats, until the process exits or the lease has to end it.
        self.lease.wake()
        for thread in self._threads:
            if thread.name == "lease-heartbeat" or release:
                thread.join(timeout=self.heartbeat_s + 10)
        try:
            transitions.worker_stopped(process_id(), release=release)
            log.info("worker_stopped", worker=process_id(), write="awaited", lease_released=release)
        except Exception as error:  # noqa: BLE001 - shutting down: the lease runs out by itself
            log.warning("worker_stop_not_recorded", worker=process_id(), error=str(error).strip())
        finally:
            close_quietly()

    def _beat(self, broker_id: str | None) -> None:
        host, pid, lease_ms = socket.gethostname(), os.getpid(), int(self.lease.window_s * 1000)
        timeout_ms = max(1000, int(self.heartbeat_s * 1000))
        failures, held, checked = 0, False, self.may_act_as_users
        given_before = lease_ms
        try:
            while not self._stop_beating.is_set():
                sent_at = clock()
                try:
                    if not checked:
                        # Before the first lease, so that no job ever starts under such a role.
                        if scope.may_act_as_users():
                            log.error(
                                "worker_refused",
                                worker=process_id(),
                                why="it logs in as a role that may act as a user: log workers in as jobs_worker "
                                "(WORKER_DATABASE_URL, jobctl worker); it runs no job",
                            )
                            self._stop_beating.wait(self.heartbeat_s)
                            continue
                        checked = True
                    # int(): a database not migrated to 0016 answers None, a failed heartbeat
                    # like any other, not an error outside this try that would end the thread.
                    given_ms = int(
                        transitions.heartbeat(
                            process_id(), host, pid, lease_ms=lease_ms, broker_id=broker_id, timeout_ms=timeout_ms
                        )
                    )
                except Exception as error:  # noqa: BLE001 - the heartbeat must outlive any failure
                    close_quietly()  # a connection broken by the error stays broken until closed
                    failures += 1
                    log.warning("heartbeat_failed", worker=process_id(), failures=failures, error=str(error).strip())
                else:
                    if given_ms != given_before:
                        self._say_lease_given(lease_ms, given_ms)
                        given_before = given_ms
                    lapsed = not self.lease.live()
                    self.lease.renewed(sent_at, given_ms / 1000)
                    if lapsed:
                        event = "lease_renewed" if held else "lease_acquired"
                        log.info(event, worker=process_id(), broker_id=broker_id, after_failures=failures)
                    failures, held = 0, True
                self._stop_beating.wait(max(0.0, sent_at + self.heartbeat_s - clock()))
        finally:
            close_quietly()

    def _say_lease_given(self, asked_ms: int, given_ms: int) -> None:
        """The database gives less than this worker asks for (JOBS_RECOVERY_WINDOW_S above what
        `jobctl migrate` recorded): the worker counts what it was given, and says so when that
        changes; an error when it leaves too little to run jobs under."""
        usable = given_ms / 1000 - self.lease.margin_s > 2 * self.heartbeat_s
        (log.warning if usable else log.error)(
            "lease_shortened" if given_ms < asked_ms else "lease_given",
            worker=process_id(),
            asked_ms=asked_ms,
            given_ms=given_ms,
            **({} if usable else {"why": "the lease given, minus JOBS_LEASE_MARGIN_S, is under 2 heartbeats"}),
        )
