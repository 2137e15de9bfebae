"""A worker process's lease on its jobs: renewed by heartbeats, and never outlived by a job.

The database gives a worker process its lease, `window_s` from each recorded heartbeat by the
database's own clock, and the reaper takes back the process's jobs only once it has run out
(db/migrations/0009_leases.sql). The process counts from the moment it *sent* the last
heartbeat it saw committed, by its own monotonic clock: that moment is never later than the
one the database recorded, so the process's view of its lease always ends first. It stops its
running jobs `margin_s` before that end, and if one of them does not stop within half the
margin (code an exception can't interrupt), it ends itself: no execution of a job can overlap
the next one, whatever cut the process off from the database and for however long.
"""

from __future__ import annotations

import ctypes
import math
import os
import socket
import threading
import time
from typing import Any

import structlog
from dramatiq import Broker, Message
from dramatiq.middleware import Interrupt, Middleware, raise_thread_exception

from db import transitions
from db.connection import close_quietly

from .identity import process_id
from .options import ATTEMPT

log = structlog.get_logger(__name__)

#: The exit status of a process that ended itself because a job would not stop (EX_TEMPFAIL).
EXIT_LEASE_LOST = 75


class LeaseExpired(Interrupt):
    """Raised into a job's thread when its worker could not renew its lease in time: the job may
    soon be given to another worker, so this execution stops first. Like TimeLimitExceeded, it
    is not an Exception, so that an actor's `except Exception` does not swallow it."""


class Lease:
    """This process's right to hold jobs, as far as the process itself can prove it, and the
    threads that run jobs under it.

    Parameters:
      window_s(float): the lease the database gives from each recorded heartbeat.
      margin_s(float): running jobs are stopped this long before the lease ends.
    """

    def __init__(self, *, window_s: float, margin_s: float) -> None:
        self.window_s = window_s
        self.margin_s = margin_s
        # Notified whenever the lease is renewed or closed, and when a job is watched.
        self._changed = threading.Condition(threading.RLock())
        self._sent_at = -math.inf
        self._closed = False
        #: thread id -> [job id, whether LeaseExpired was raised into it]
        self._watched: dict[int, list[Any]] = {}

    def renewed(self, sent_at: float) -> None:
        """A heartbeat sent at `sent_at` (time.monotonic()) was committed."""
        with self._changed:
            self._sent_at = max(self._sent_at, sent_at)
            self._changed.notify_all()

    def stop_at(self) -> float:
        """When running jobs must be stopped, on time.monotonic()'s scale."""
        return self._sent_at + self.window_s - self.margin_s

    def kill_at(self) -> float:
        """When the process must end, if a job has not stopped."""
        return self._sent_at + self.window_s - self.margin_s / 2

    def live(self) -> bool:
        return time.monotonic() < self.stop_at()

    def wait_live(self, *, poll_s: float = 1.0) -> bool:
        """Waits until the lease is live; False if it is not and the lease is closed (the worker
        is stopping: a job that waits for a lease gives up)."""
        with self._changed:
            while not self.live():
                if self._closed:
                    return False
                self._changed.wait(poll_s)
            return True

    def wait_renewed_after(self, moment: float) -> bool:
        """Waits until a heartbeat sent after `moment` is committed; False once the lease is closed."""
        with self._changed:
            while not self._closed:
                if self._sent_at > moment:
                    return True
                self._changed.wait()
            return False

    def close(self) -> None:
        """No job may wait for the lease any more: the worker is stopping."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def open(self) -> None:
        with self._changed:
            self._closed = False

    def watch(self, job_id: str) -> None:
        """The calling thread runs `job_id` from now on; raises LeaseExpired if the lease is not live."""
        with self._changed:
            if not self.live():
                raise LeaseExpired(f"the lease of worker {process_id()} is not live")
            self._watched[threading.get_ident()] = [job_id, False]
            self._changed.notify_all()

    def unwatch(self, *, stopped: bool) -> None:
        """The calling thread's job has ended (`stopped`: by LeaseExpired)."""
        thread = threading.get_ident()
        with self._changed:
            watched = self._watched.pop(thread, None)
            if watched is not None and watched[1] and not stopped:
                # Raised into this thread after its job had ended, and not landed yet: it must not
                # land in the writes that follow.
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread), None)

    def running(self) -> int:
        with self._changed:
            return len(self._watched)

    def guard(self, stop: threading.Event) -> None:
        """The watchdog, until `stop` is set: once the lease is not live, raises LeaseExpired into
        every watched thread; if one still runs at kill_at(), ends the process."""
        with self._changed:
            lapsed = False
            while not stop.is_set():
                now = time.monotonic()
                if now < self.stop_at():
                    lapsed = False
                    self._changed.wait(self.stop_at() - now)
                    continue
                if not lapsed and self._watched:
                    log.error("lease_lapsed", worker=process_id(), running=len(self._watched))
                lapsed = True
                for thread, watched in self._watched.items():
                    if not watched[1]:
                        watched[1] = True
                        log.warning("job_stopping", job_id=watched[0], worker=process_id(), why="lease")
                        raise_thread_exception(thread, LeaseExpired)
                if not self._watched:
                    self._changed.wait()
                elif now >= self.kill_at():
                    log.critical(
                        "worker_exiting",
                        worker=process_id(),
                        why="a job did not stop before its lease could run out",
                        job_ids=[watched[0] for watched in self._watched.values()],
                        lease_left_s=round(self._sent_at + self.window_s - now, 3),
                    )
                    os._exit(EXIT_LEASE_LOST)
                else:
                    self._changed.wait(self.kill_at() - now)

    def wake(self) -> None:
        with self._changed:
            self._changed.notify_all()


class LeaseKeeper(Middleware):
    """Keeps this worker process's lease, and stops its jobs before the lease can run out.

    Guarantees:
      * A heartbeat thread of its own renews the lease every `heartbeat_s`, from the moment the
        worker boots; a failed heartbeat (the database unreachable, anything) is logged and tried
        again at the next beat, for as long as the worker runs.
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
    """

    def __init__(self, lease: Lease, *, heartbeat_s: float) -> None:
        self.lease = lease
        self.heartbeat_s = heartbeat_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def before_process_message(self, broker: Broker, message: Message) -> None:
        if ATTEMPT in message.options:
            # Raises LeaseExpired if the lease is not live: the status middleware, which recorded
            # the start, records this attempt's end too.
            self.lease.watch(message.message_id)

    def after_process_message(
        self, broker: Broker, message: Message, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        self.lease.unwatch(stopped=isinstance(exception, LeaseExpired))

    def after_skip_message(self, broker: Broker, message: Message) -> None:
        self.lease.unwatch(stopped=False)

    def before_worker_boot(self, broker: Broker, worker: Any) -> None:
        # Nothing here waits for the database: a worker that boots while it is unreachable keeps
        # trying, and runs no job until its first heartbeat is recorded.
        self._stop.clear()
        self.lease.open()
        self._threads = [
            threading.Thread(
                target=self._beat, args=(getattr(broker, "broker_id", None),), name="lease-heartbeat", daemon=True
            ),
            threading.Thread(target=self.lease.guard, args=(self._stop,), name="lease-watchdog", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def before_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        # Jobs still waiting for a lease give up (their messages are handed back); running ones
        # finish, and the heartbeats go on until they have.
        self.lease.close()

    def after_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        self._stop.set()
        self.lease.wake()
        for thread in self._threads:
            thread.join(timeout=self.heartbeat_s + 10)
        release = self.lease.running() == 0
        try:
            transitions.worker_stopped(process_id(), release=release)
            log.info("worker_stopped", worker=process_id(), write="awaited", lease_released=release)
        except Exception as error:  # noqa: BLE001 - shutting down: the lease runs out by itself
            log.warning("worker_stop_not_recorded", worker=process_id(), error=str(error).strip())
        finally:
            close_quietly()

    def _beat(self, broker_id: str | None) -> None:
        host, pid, lease_ms = socket.gethostname(), os.getpid(), int(self.lease.window_s * 1000)
        failures, held = 0, False
        try:
            while not self._stop.is_set():
                sent_at = time.monotonic()
                try:
                    transitions.heartbeat(process_id(), host, pid, lease_ms=lease_ms, broker_id=broker_id)
                except Exception as error:  # noqa: BLE001 - the heartbeat must outlive any failure
                    close_quietly()  # a connection broken by the error stays broken until closed
                    failures += 1
                    log.warning("heartbeat_failed", worker=process_id(), failures=failures, error=str(error).strip())
                else:
                    lapsed = not self.lease.live()
                    self.lease.renewed(sent_at)
                    if lapsed:
                        event = "lease_renewed" if held else "lease_acquired"
                        log.info(event, worker=process_id(), broker_id=broker_id, after_failures=failures)
                    failures, held = 0, True
                self._stop.wait(max(0.0, sent_at + self.heartbeat_s - time.monotonic()))
        finally:
            close_quietly()
