"""One listening connection per server process, fanned out to the open streams.

A thread listens (db.notifications.Listener) and hands what it hears to the event loop, which
wakes the streams it concerns: a job's stream when that job is named, a stream of every job
whenever any is. A wake-up carries nothing but "look now" (and, for progress, which jobs): each
stream reads for itself, as its own viewer (jobs.live.Feed). Wake-ups that come while a stream
is reading are merged into one read, which is what keeps a burst of announcements from turning
into as many reads per stream.

A stream of every job is woken only for the jobs its viewer could see: the hub looks up each
announced job's organization and user (once per job: they never change, 0002's guard) and wakes
an operator's streams for every job, an admin's for their organization's, a member's for their
own. The look-up only spares the other streams a read that would find nothing: what a stream
sends is still what it reads as its viewer, under row-level security. (A viewer whose role
changed while their stream was open hears, until they connect again, as the role they had.)

When the connection is lost, every stream is woken once it is back: what was announced
meanwhile is lost, and each stream reads what was committed since its last read.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from db.errors import DatabaseUnavailable
from db.notifications import EVENTS, Listener, Notification

log = structlog.get_logger(__name__)

# How long the listening thread waits for a notification before it looks whether it should stop.
POLL_S = 0.5
# The pause before connecting again after the connection was lost (doubling up to the maximum).
RECONNECT_S = (0.1, 5.0)
# Jobs whose owners the hub remembers (about 200 bytes each): a running job is announced again
# and again (its progress), and its owners never change.
OWNERS_KEPT = 50_000


@dataclass(frozen=True)
class Audience:
    """Whose jobs a viewer sees: every tenant's (an operator: neither given), an organization's
    (an admin), or one user's (a member: both given)."""

    organization_id: str | None = None
    user_id: str | None = None

    def sees(self, owner: tuple[str, str]) -> bool:
        organization_id, user_id = owner
        return self.organization_id in (None, organization_id) and self.user_id in (None, user_id)


EVERYONE = Audience()


class Subscription:
    """What one stream is woken for: one job (`job_id`), or every job its `audience` sees."""

    def __init__(self, job_id: str | None, audience: Audience = EVERYONE) -> None:
        self.job_id = job_id
        self.audience = audience
        self.woken = asyncio.Event()
        self.progressed: set[str] = set()

    def take_progressed(self) -> list[str]:
        progressed, self.progressed = sorted(self.progressed), set()
        return progressed


class Hub:
    def __init__(self, connect: Callable[[], Listener]) -> None:
        self._connect = connect
        # Streams of every job, by the organization their viewer sees (None: every one), and
        # streams of one job by its id: a notification costs lookups, not a pass over every stream.
        self._everything: dict[str | None, set[Subscription]] = {}
        self._by_job: dict[str, set[Subscription]] = {}
        # Each announced job's (organization, user), read by the listening thread.
        self._owners: dict[str, tuple[str, str]] = {}
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

    def subscribe(self, job_id: str | None = None, audience: Audience = EVERYONE) -> Subscription:
        """A stream of one job (`job_id`), or of every job `audience` sees."""
        subscription = Subscription(job_id, audience)
        self._group(subscription).setdefault(self._key(subscription), set()).add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        group, key = self._group(subscription), self._key(subscription)
        watching = group.get(key, set())
        watching.discard(subscription)
        if not watching:
            group.pop(key, None)

    def _group(self, subscription: Subscription) -> dict:
        return self._everything if subscription.job_id is None else self._by_job

    @staticmethod
    def _key(subscription: Subscription) -> str | None:
        return subscription.audience.organization_id if subscription.job_id is None else subscription.job_id

    @property
    def streams(self) -> int:
        return sum(map(len, self._everything.values())) + sum(map(len, self._by_job.values()))

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
            self._deliver([None], {})
            try:
                while not self._stopping.is_set():
                    notes = listener.wait(POLL_S)
                    if notes:
                        self._deliver(notes, self._owners_of(listener, notes))
            except DatabaseUnavailable as error:
                log.warning("listener_lost", error=str(error))
            finally:
                self.listening.clear()
                listener.close()

    def _owners_of(self, listener: Listener, notes: list[Notification]) -> dict[str, tuple[str, str]]:
        """The (organization, user) of each announced job, as far as they are known: a job that
        isn't one (anyone may NOTIFY) has none, and concerns no stream of every job."""
        unknown = list({note.job_id for note in notes} - self._owners.keys())
        if unknown:
            if len(self._owners) + len(unknown) > OWNERS_KEPT:
                self._owners.clear()
            self._owners.update(listener.owners(unknown))
        return {note.job_id: self._owners[note.job_id] for note in notes if note.job_id in self._owners}

    def _deliver(self, notes: list[Notification | None], owners: dict[str, tuple[str, str]]) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake, notes, owners)

    def _wake(self, notes: list[Notification | None], owners: dict[str, tuple[str, str]]) -> None:
        if None in notes:  # back after a lost connection: anything may have happened
            for group in (*self._everything.values(), *self._by_job.values()):
                for subscription in group:
                    subscription.woken.set()
        progressed = {note.job_id for note in notes if note is not None and note.channel != EVENTS}
        for job_id in {note.job_id for note in notes if note is not None}:
            owner = owners.get(job_id)
            if owner is not None:
                for organization_id in (None, owner[0]):
                    for subscription in self._everything.get(organization_id, ()):
                        if subscription.audience.sees(owner):
                            self._wake_one(subscription, job_id, progressed)
            for subscription in self._by_job.get(job_id, ()):
                self._wake_one(subscription, job_id, progressed)

    @staticmethod
    def _wake_one(subscription: Subscription, job_id: str, progressed: set[str]) -> None:
        if job_id in progressed:
            subscription.progressed.add(job_id)
        subscription.woken.set()
