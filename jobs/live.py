"""What a live view of jobs sends, as its viewer may see it: a job's events and progress as they
are committed, or those of every job the viewer sees.

A Feed reads; it does not wait. Whoever runs it (the API's streams) calls `read` when the
database announces a change (db.notifications), and after a reconnect. Each read runs as the
viewer, under row-level security (a user) or with the operators' view (an operator), and shapes
what it returns for that audience (jobs.reads.for_tenant), so a notification never carries
anything across tenants: it only says when to look.

Every event comes with the position just after it (a db.feed.Cursor): a view that resumes
from the last position it received gets each later event once, and none twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from db import feed, queries, scope
from db.connection import database
from db.feed import Cursor

from .errors import JobNotFound
from .reads import event_for_tenant, for_tenant

FINAL = frozenset({"completed", "failed", "cancelled"})
# What a progress message shows of a job: enough to draw its row, nothing of its history.
PROGRESS_FIELDS = ("job_id", "status", "progress", "progress_message", "updated_at")


@dataclass(frozen=True)
class Message:
    """One thing to send: `kind` "event" (with the position after it) or "job" (a job's state
    and progress now, to be drawn over what was drawn before: it has no position)."""

    kind: str
    data: dict[str, Any]
    cursor: Cursor | None = None


@dataclass(frozen=True)
class Viewer:
    """Who watches: a user (`user_id`) or an operator (every tenant, whole)."""

    user_id: UUID | None = None
    operator: bool = False

    def __post_init__(self) -> None:
        if self.operator == (self.user_id is not None):
            raise ValueError("a viewer is either a user or an operator")

    def scope(self) -> AbstractContextManager[Any]:
        return database.atomic() if self.operator else scope.as_user(self.user_id)

    def job(self, job: dict[str, Any]) -> dict[str, Any]:
        return job if self.operator else for_tenant(job)

    def event(self, event: dict[str, Any]) -> dict[str, Any]:
        return event if self.operator else event_for_tenant(event)


class Feed:
    """The live view of one job (`job_id`) or of every job `viewer` sees.

    `open` gives what the view starts with: for one job, its state and its history (or, with a
    `cursor`, its state and what came after the cursor); for every job, what came after the
    cursor, or nothing (the view starts now). `read` gives what is new. A job's feed is
    `finished` once it has sent an event that ends the job. Raises JobNotFound for a job the
    viewer may not see, and db.feed.CursorTooOld for a cursor too far behind.
    """

    def __init__(self, viewer: Viewer, *, job_id: str | None = None, cursor: Cursor | None = None, limit: int = 500):
        self.viewer = viewer
        self.job_id = job_id
        self.cursor = cursor
        self.limit = limit
        self.finished = False

    def open(self) -> list[Message]:
        with self.viewer.scope():
            if self.job_id is None:
                if self.cursor is None:
                    self.cursor = feed.now()
                    return []
                return self._changes()
            job = queries.get_job(self.job_id)
            if job is None:
                raise JobNotFound(self.job_id)
            first = [Message("job", _progress(self.viewer.job(job)))]
            if self.cursor is not None:
                return first + self._changes()
            events, self.cursor = feed.history(self.job_id)
            # Positions within the history: the events up to each one, of those the history read.
            start = Cursor(feed.NOTHING_SEEN, self.cursor.seen, 0)
            return first + self._messages(events, start)

    def read(self, progressed: Iterable[str] = ()) -> list[Message]:
        """What was committed since the last read; and the progress now of the jobs named in
        `progressed` (announced on the progress channel) that the viewer sees."""
        if self.finished:
            return []
        with self.viewer.scope():
            messages = self._changes()
            wanted = [job_id for job_id in progressed if self.job_id is None or job_id == self.job_id]
            if wanted and not self.finished:
                messages += [Message("job", self.viewer.job(row)) for row in queries.progress_of(wanted)]
        return messages

    def _changes(self) -> list[Message]:
        messages: list[Message] = []
        while True:
            start = self.cursor
            events, self.cursor = feed.changes(start, job_id=self.job_id, limit=self.limit)
            messages += self._messages(
                events, Cursor(start.seen, self.cursor.upto or self.cursor.seen, start.after_id or 0)
            )
            if self.cursor.upto is None or self.finished:
                return messages

    def _messages(self, events: list[dict[str, Any]], page: Cursor) -> list[Message]:
        messages = []
        for event in events:
            messages.append(Message("event", self.viewer.event(event), Cursor(page.seen, page.upto, event["id"])))
            if self.job_id is not None and event["to_status"] in FINAL:
                self.finished = True
                break
        return messages


def _progress(job: dict[str, Any]) -> dict[str, Any]:
    return {name: job[name] for name in PROGRESS_FIELDS}
