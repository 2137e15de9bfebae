"""Hears what PostgreSQL announces of jobs (0018_notifications.sql): the ids of the jobs that
gained events or progress, nothing more.

A Listener is one connection of its own, in autocommit (a LISTEN inside an open transaction
hears nothing until it ends), read without a round trip: notifications arrive on its socket.
"""

from __future__ import annotations

import select
from dataclasses import dataclass

import psycopg2

from .connection import Limits, connect
from .errors import DatabaseUnavailable
from .redact import mask_secrets

EVENTS = "job_events"
PROGRESS = "job_progress"
CHANNELS = (EVENTS, PROGRESS)


@dataclass(frozen=True)
class Notification:
    channel: str
    job_id: str


class Listener:
    """LISTENs on CHANNELS from a connection of its own. `wait` returns what arrived; a lost
    connection raises DatabaseUnavailable (what was announced meanwhile is lost: a reader
    reads again from where it was, db.feed)."""

    def __init__(self, url: str, limits: Limits | None = None) -> None:
        self._conn = connect(url, limits or Limits())
        self._conn.autocommit = True
        with self._conn.cursor() as cursor:
            # Named, so that an operator can tell it among the server's connections.
            cursor.execute("SELECT pg_catalog.set_config('application_name', 'jobs-listener', false)")
            cursor.execute("LISTEN job_events")
            cursor.execute("LISTEN job_progress")

    def fileno(self) -> int:
        return self._conn.fileno()

    def wait(self, timeout_s: float) -> list[Notification]:
        """The notifications that arrived, waiting up to `timeout_s` for the first."""
        try:
            if not self._conn.notifies:
                ready, _, _ = select.select([self._conn], [], [], timeout_s)
                if ready:
                    self._conn.poll()
            else:
                self._conn.poll()
        except (psycopg2.Error, OSError) as error:
            raise DatabaseUnavailable(f"listener: {mask_secrets(str(error).strip())}") from None
        if self._conn.closed:
            raise DatabaseUnavailable("listener: connection closed")
        notes, self._conn.notifies[:] = list(self._conn.notifies), []
        return [Notification(note.channel, note.payload) for note in notes]

    def close(self) -> None:
        self._conn.close()
