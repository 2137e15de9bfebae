"""Sessions of the system's login roles, as a compromised worker or a buggy service would have
them: direct SQL, no Python in between."""

from __future__ import annotations

import secrets

import psycopg2
import pytest


def _session(url: str):
    conn = psycopg2.connect(url)
    conn.autocommit = True
    return conn


@pytest.fixture
def as_worker(settings):
    """A session of the workers' role (jobs_worker)."""
    conn = _session(settings.worker_database_url)
    yield conn
    conn.close()


@pytest.fixture
def as_service(settings):
    """A session of the services' role (jobs_service), which sends and may act as a user."""
    conn = _session(settings.database_url)
    yield conn
    conn.close()


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
