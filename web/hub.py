"""One listening connection per server process, fanned out to the open streams.

A thread listens (db.notifications.Listener) and hands what it hears to the event loop, which
wakes the streams it concerns: a job's stream when that job is named, a stream of every job
whenever any is. A wake-up carries nothing but "look now" (and, for progress, which jobs): each
stream reads for itself, as its own viewer (jobs.live.Feed). Wake-ups that come while a stream
is reading are merged into one read, which is what keeps a burst of announcements from turning
into as many reads per stream.

When the connection is lost, every stream is woken once it is back: what was announced
meanwhile is lost, and each stream reads what was committed since its last read.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import structlog

from db.errors import DatabaseUnavailable
from db.notifications import EVENTS, Listener, Notification

log = structlog.get_logger(__name__)

# How long the listening thread waits for a notification before it looks whether it should stop.
POLL_S = 0.5
# The pause before connecting again after the connection was lost (doubling up to the maximum).
RECONNECT_S = (0.1, 5.0)


class Subscription:
    """What one stream is woken for: one job (`job_id`) or every job."""

    def __init__(self, job_id: str | None) -> None:
        self.job_id = job_id
        self.woken = asyncio.Event()
        self.progressed: set[str] = set()

    def take_progressed(self) -> list[str]:
        progressed, self.progressed = sorted(self.progressed), set()
        return progressed


class Hub:
    def __init__(self, connect: Callable[[], Listener]) -> None:
        self._connect = connect
        # Streams of every job, and streams of one job by its id: a notification costs a lookup,
        # not a pass over every stream.
        self._everything: set[Subscription] = set()
        self._by_job: dict[str, set[Subscription]] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Set while the listening connection is up (tests and the health check read it).
        self.listening = threading.Event()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._listen, name="notifications", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=POLL_S * 4)

    def subscribe(self, job_id: str | None = None) -> Subscription:
        subscription = Subscription(job_id)
        if job_id is None:
            self._everything.add(subscription)
        else:
            self._by_job.setdefault(job_id, set()).add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription.job_id is None:
            self._everything.discard(subscription)
            return
        watching = self._by_job.get(subscription.job_id, set())
        watching.discard(subscription)
        if not watching:
            self._by_job.pop(subscription.job_id, None)

    @property
    def streams(self) -> int:
        return len(self._everything) + sum(map(len, self._by_job.values()))

    def _listen(self) -> None:
        pause = RECONNECT_S[0]
        while not self._stopping.is_set():
            try:
                listener = self._connect()
            except DatabaseUnavailable as error:
                log.warning("listener_unavailable", error=str(error), retry_in_s=pause)
                self._stopping.wait(pause)
                pause = min(pause * 2, RECONNECT_S[1])
                continue
            pause = RECONNECT_S[0]
            self.listening.set()
            self._deliver([None])
            try:
                while not self._stopping.is_set():
                    notes = listener.wait(POLL_S)
                    if notes:
                        self._deliver(notes)
            except DatabaseUnavailable as error:
                log.warning("listener_lost", error=str(error))
            finally:
                self.listening.clear()
                listener.close()

    def _deliver(self, notes: list[Notification | None]) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake, notes)

    def _wake(self, notes: list[Notification | None]) -> None:
        if None in notes:  # back after a lost connection: anything may have happened
            for subscription in [*self._everything, *(s for group in self._by_job.values() for s in group)]:
                subscription.woken.set()
        progressed = {note.job_id for note in notes if note is not None and note.channel != EVENTS}
        for subscription in self._everything:
            subscription.progressed |= progressed
            subscription.woken.set()
        for job_id in {note.job_id for note in notes if note is not None}:
            for subscription in self._by_job.get(job_id, ()):
                if job_id in progressed:
                    subscription.progressed.add(job_id)
                subscription.woken.set()
