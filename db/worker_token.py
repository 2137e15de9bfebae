"""This process's worker token: the secret by which the database knows a lifecycle call comes from
the worker process it names (0016_worker_tokens.sql).

Each process makes its own at random (again after a fork: a child is another worker) and presents
it on every connection it opens, as the session setting `jobs.worker_token` given in the
connection's startup packet (db.connection), never in a statement's text: pg_stat_activity shows
the text of a session's statements to every session of the same role, and all workers log in as
one role; a server logs the text of a statement that failed. The process's first heartbeat records
the token's sha256 with its worker id; from then on the database lets a session act as that worker
(start, end or stop its jobs, renew or release its lease) only if it presents the same token. It is
never logged, stored or shown (db.redact masks it too, should an error quote a connection's options).
"""

from __future__ import annotations

import os
import secrets
import threading

#: The session setting the lifecycle functions read (worker_token_presented()).
SETTING = "jobs.worker_token"

_lock = threading.Lock()
_token: str | None = None


def current() -> str:
    """This process's token, made on first use (URL-safe: it goes into libpq's options as is).
    Under a lock: two threads connecting first at once must present the same one."""
    global _token
    with _lock:
        if _token is None:
            _token = secrets.token_urlsafe(32)
        return _token


def _forked() -> None:
    # A child is another worker process: a token of its own (and a lock no parent thread holds).
    global _lock, _token
    _lock, _token = threading.Lock(), None


os.register_at_fork(after_in_child=_forked)


def startup_option() -> str:
    """The libpq `options` entry that presents it."""
    return f"-c {SETTING}={current()}"
