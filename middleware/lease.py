"""A worker process's lease on its jobs: renewed by heartbeats, and never outlived by a job.

The database gives a worker process its lease, `window_s` from each recorded heartbeat by the
database's own clock (or less: the heartbeat says what it gave, up to the server's longest
lease), and the reaper takes back the process's jobs only once it has run out
(db/migrations/0009_leases.sql, 0016_worker_tokens.sql). The process counts the lease it was
given from the moment it *sent* the last heartbeat it saw committed, by its own clock (CLOCK_BOOTTIME, which also counts time spent
suspended): that moment is never later than the one the database recorded, so the process's
view of its lease always ends first. It stops its running jobs `margin_s` before that end: an
exception raised into each job's thread, and the thread's database connection ended, so that a
statement blocked on a lost server returns. If a job still has not stopped within half the
margin (code an exception can't reach), the process ends itself, from Python or, if Python
itself can't run (C code holding the GIL), from faulthandler's C thread a little later. So no
execution of a job overlaps the next one, whatever cut the process off and for however long.
"""

from __future__ import annotations

import ctypes
import faulthandler
import math
import os
import sys
import threading
import time
from typing import Any

import structlog
from dramatiq.middleware import Interrupt, raise_thread_exception

from db.connection import interrupt

from .identity import process_id

log = structlog.get_logger(__name__)

#: The exit status of a process that ended itself because a job would not stop (EX_TEMPFAIL).
EXIT_LEASE_LOST = 75
# The watchdog looks again at least this often: after a suspended host resumes, its timed waits
# (on the monotonic clock, which stood still) would otherwise wake late.
_LOOK_AGAIN_S = 0.5


def clock() -> float:
    """The lease's clock: seconds that keep counting while the host is suspended, where it can."""
    return time.clock_gettime(time.CLOCK_BOOTTIME) if hasattr(time, "CLOCK_BOOTTIME") else time.monotonic()


class LeaseExpired(Interrupt):
    """Raised into a job's thread when its worker could not renew its lease in time: the job may
    soon be given to another worker, so this execution stops first. Like TimeLimitExceeded, it
    is not an Exception, so that an actor's `except Exception` does not swallow it."""


class Lease:
    """This process's right to hold jobs, as far as the process itself can prove it, and the
    threads that run jobs under it.

    Parameters:
      window_s(float): the lease asked for at each heartbeat.
      margin_s(float): running jobs are stopped this long before the lease ends.
    """

    def __init__(self, *, window_s: float, margin_s: float) -> None:
        self.window_s = window_s
        self.margin_s = margin_s
        # Notified whenever the lease is renewed or closed.
        self._changed = threading.Condition(threading.RLock())
        self._sent_at = -math.inf
        # When the lease ends, by this process's count: the latest end of a renewal's lease, the
        # moment it was sent plus the lease it was given (the database may give less than
        # window_s, and never moves a lease's end earlier: 0016_worker_tokens.sql).
        self._ends_at = -math.inf
        self._closed = False
        #: thread id -> [job id, whether LeaseExpired was raised into it]
        self._watched: dict[int, list[Any]] = {}
        self._armed = False

    def renewed(self, sent_at: float, given_s: float | None = None) -> None:
        """A heartbeat sent at `sent_at` (clock()) was committed, and gave a lease of `given_s`
        (window_s if not said)."""
        with self._changed:
            self._sent_at = max(self._sent_at, sent_at)
            self._ends_at = max(self._ends_at, sent_at + (self.window_s if given_s is None else given_s))
            self._backstop()
            self._changed.notify_all()

    def ends_at(self) -> float:
        """When the lease ends by this process's count, on clock()'s scale (never after the
        database's end)."""
        return self._ends_at

    def stop_at(self) -> float:
        """When running jobs must be stopped, on clock()'s scale."""
        return self._ends_at - self.margin_s

    def kill_at(self) -> float:
        """When the process must end, if a job has not stopped."""
        return self._ends_at - self.margin_s / 2

    def live(self) -> bool:
        return clock() < self.stop_at()

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
        """A worker boots: no lease until its first heartbeat (whatever an earlier boot held, unless
        a job of that boot still runs under it)."""
        with self._changed:
            self._closed = False
            if not self._watched:
                self._sent_at = self._ends_at = -math.inf

    def watch(self, job_id: str) -> None:
        """The calling thread runs `job_id` from now on; raises LeaseExpired if the lease is not live."""
        with self._changed:
            if not self.live():
                raise LeaseExpired(f"the lease of worker {process_id()} is not live")
            self._watched[threading.get_ident()] = [job_id, False]
            if not self._armed:
                self._backstop()
            # The watchdog is not woken: the lease is live, so it sleeps until stop_at() at the
            # latest, and then finds this thread among the watched (a wake-up per job was a
            # thread switch per job, for nothing).

    def unwatch(self, *, stopped: bool) -> None:
        """The calling thread's job has ended (`stopped`: by LeaseExpired)."""
        thread = threading.get_ident()
        with self._changed:
            watched = self._watched.pop(thread, None)
            if watched is not None and watched[1] and not stopped:
                # Raised into this thread after its job had ended, and not landed yet: it must not
                # land in the writes that follow.
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread), None)
            if not self._watched and not self.live():
                self._backstop()  # nothing left to guard

    def running(self) -> int:
        with self._changed:
            return len(self._watched)

    def guard(self, stop: threading.Event) -> None:
        """The watchdog, until `stop` is set: once the lease is not live, raises LeaseExpired into
        every watched thread and ends its database connection; if one still runs at kill_at(),
        ends the process."""
        with self._changed:
            lapsed = False
            while not stop.is_set():
                now = clock()
                if now < self.stop_at():
                    lapsed = False
                    self._changed.wait(min(self.stop_at() - now, _LOOK_AGAIN_S))
                    continue
                if not lapsed and self._watched:
                    log.error("lease_lapsed", worker=process_id(), running=len(self._watched))
                lapsed = True
                for thread, watched in self._watched.items():
                    if not watched[1]:
                        watched[1] = True
                        try:
                            raise_thread_exception(thread, LeaseExpired)
                            # A statement blocked on a lost server holds the thread in C: end it.
                            ended = interrupt(thread)
                            log.warning("job_interrupted_for_lease", job_id=watched[0], connection_ended=ended)
                        except Exception as error:  # noqa: BLE001 - the watchdog must go on: kill_at still holds
                            log.error("job_not_interrupted", job_id=watched[0], error=str(error))
                if not self._watched:
                    self._backstop()  # nothing to guard
                    self._changed.wait(_LOOK_AGAIN_S)
                elif now >= self.kill_at():
                    log.critical(
                        "worker_exited",
                        worker=process_id(),
                        why="a job did not stop before its lease could run out",
                        job_ids=[watched[0] for watched in self._watched.values()],
                        lease_left_s=round(self._ends_at - now, 3),
                    )
                    os._exit(EXIT_LEASE_LOST)
                else:
                    self._changed.wait(min(self.kill_at() - now, _LOOK_AGAIN_S))

    def _backstop(self) -> None:
        """faulthandler's C thread ends the process a little after kill_at(), unless re-armed by a
        renewal first: when Python itself can't run (C code holding the GIL), neither can the
        watchdog. Armed while jobs run under a live lease, off otherwise; arming starts a thread,
        so it is done on renewals and on the first job, not on every job."""
        if self._watched:
            if self.live():  # a lapsed lease keeps the deadline it had
                deadline = self._ends_at - self.margin_s / 4
                faulthandler.dump_traceback_later(max(0.001, deadline - clock()), exit=True, file=sys.__stderr__)
                self._armed = True
        elif self._armed:
            faulthandler.cancel_dump_traceback_later()
            self._armed = False

    def disarm(self) -> None:
        """The worker stopped with nothing running: no backstop may outlive it."""
        with self._changed:
            if self._armed and not self._watched:
                faulthandler.cancel_dump_traceback_later()
                self._armed = False

    def wake(self) -> None:
        with self._changed:
            self._changed.notify_all()
