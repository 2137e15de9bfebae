"""Sessions as a compromised worker would have them."""

from __future__ import annotations

import secrets

import psycopg2
import pytest


@pytest.fixture
def worker_session(settings):
    """`worker_session(token=...)`: a session of the workers' role that presents `token` as its
    worker token (db/worker_token.py; a new random one if not given, None for none): another
    worker process, or code that runs as jobs_worker and knows no other worker's token."""
    opened = []

    def open_session(token: str | None = "random") -> psycopg2.extensions.connection:
        if token == "random":
            token = secrets.token_urlsafe(32)
        options = {} if token is None else {"options": f"-c jobs.worker_token={token}"}
        conn = psycopg2.connect(settings.worker_database_url, **options)
        conn.autocommit = True
        opened.append(conn)
        return conn

    yield open_session
    for conn in opened:
        conn.close()
