"""Who a token's user is (their organization and role), read at most once per VIEWER_TTL_S.

Reading it on every request was a transaction of its own, on a database thread, before the
request's own: a third of the work of a small read (scripts/bench_api.py, BENCHMARKS.md). What
it decides is not what keeps tenants apart: every read and action of a user runs as that user
(db.scope.as_user), which reads the user again in the request's own transaction, refuses one
who no longer exists (401), and lets row-level security judge with the role the database holds
at that moment. What may lag, for at most VIEWER_TTL_S, is what the server takes the caller to be
before that: the role a page shows them, the jobs a stream of theirs is woken for (web.hub), and
a send's refusal of a user deleted meanwhile (422 rather than 401).
"""

from __future__ import annotations

import time

from db.scope import Viewer
from jobs import reads

from .database import DatabaseThreads

VIEWER_TTL_S = 5.0
#: Users remembered at most (a few hundred bytes each); past that, the oldest are read again.
KEPT = 10_000


class Viewers:
    def __init__(self, ttl_s: float = VIEWER_TTL_S, kept: int = KEPT) -> None:
        self.ttl_s, self.kept = ttl_s, kept
        # Oldest first (dicts keep their order of insertion): (the viewer, when it was read).
        self._read: dict[str, tuple[Viewer, float]] = {}

    async def get(self, threads: DatabaseThreads, user_id: str) -> Viewer:
        """The user; UnknownUser for an id that names no one (never remembered)."""
        now = time.monotonic()
        found = self._read.get(user_id)
        if found is not None and now - found[1] < self.ttl_s:
            return found[0]
        viewer = await threads.run(reads.viewer, user_id)
        self._read.pop(user_id, None)
        self._read[user_id] = (viewer, now)
        while len(self._read) > self.kept:
            del self._read[next(iter(self._read))]
        return viewer
