"""Sessions of the system's login roles, as a compromised worker or a buggy service would have
them: direct SQL, no Python in between."""

from __future__ import annotations

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
