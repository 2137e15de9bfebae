"""Each pytest-xdist worker gets its own database and its own Redis namespace; each test a clean
database with the fixture tenants, and its own brokers and workers."""

from __future__ import annotations

import dataclasses
import logging
import os
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from urllib.parse import urlparse, urlunparse

import psycopg2
import pytest

# The servers the suite uses (README, "Tests"): an administrator of a PostgreSQL server, and a
# Redis server. Every run makes its own databases and namespaces on them, so two runs can share them.
ADMIN_URL = os.environ.get("TEST_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _database_url(database: str, user: str | None = None) -> str:
    """ADMIN_URL's server, with another database and, if given, another user."""
    parts = urlparse(ADMIN_URL)
    if user is not None:
        parts = parts._replace(netloc=f"{user}@{parts.hostname}:{parts.port or 5432}")
    return urlunparse(parts._replace(path=f"/{database}"))


def pytest_configure(config: pytest.Config) -> None:
    # Before `actors` is imported anywhere: it reads its settings from the environment.
    worker_input = getattr(config, "workerinput", {})
    worker = worker_input.get("workerid", "main")
    # One name per run (xdist gives its workers the run's id), so that runs sharing a server
    # don't drop each other's databases or read each other's queues.
    run = worker_input.get("testrunuid", uuid.uuid4().hex)[:8]
    name = f"jobs_test_{run}_{worker}"
    os.environ["ADMIN_DATABASE_URL"] = _database_url(name)
    # The system under test logs in as in production, under row-level security: this process as
    # a service (it acts as users, and runs workers in its threads), worker processes as workers.
    os.environ["DATABASE_URL"] = _database_url(name, user="jobs_service")
    os.environ["WORKER_DATABASE_URL"] = _database_url(name, user="jobs_worker")
    # This process runs workers in its threads, as the services' role (worker processes, as
    # jobs_worker, would be refused that).
    os.environ["JOBS_WORKER_MAY_ACT_AS_USERS"] = "1"
    os.environ["REDIS_URL"] = REDIS_URL
    os.environ["JOBS_NAMESPACE"] = name.replace("_", "-")
    os.environ["JOBS_MIN_BACKOFF_MS"] = "10"
    os.environ["JOBS_MAX_BACKOFF_MS"] = "50"
    os.environ["JOBS_SEND_DEADLINE_S"] = "0.5"
    # Tests hold row locks on purpose, to put writes in a known order: long enough, on a loaded
    # machine, that nothing gives way before the test releases them (one test sets its own).
    os.environ["JOBS_DB_LOCK_TIMEOUT_MS"] = "60000"
    os.environ["JOBS_LOG_FORMAT"] = "console"
    from middleware.log_format import configure_logging

    configure_logging("console", "INFO")


@pytest.fixture(scope="session")
def settings():
    from middleware.settings import Settings

    return Settings.from_env()


@pytest.fixture(scope="session", autouse=True)
def database(settings):
    import db

    name = settings.database_url.rsplit("/", 1)[1]
    admin = psycopg2.connect(ADMIN_URL)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    db.migrate(settings.admin_database_url)  # and the workers' limits: each test records them (tenants)
    db.configure(settings.database_url, settings.db_limits())
    yield db.database
    db.database.close()
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture(scope="session", autouse=True)
def redis_namespace(settings):
    """Every key of this run's namespace (the broker's, dramatiq-abort's, the witness job's) goes
    when the run ends: namespaces are named per run, so none is ever reused."""
    import redis

    yield settings.namespace
    client = redis.Redis.from_url(settings.redis_url)
    try:
        # Not `namespace*`: gw1's would match gw10's, which may still be running.
        patterns = (f"{settings.namespace}:*", f"{settings.namespace}-abort:*")
        keys = [key for pattern in patterns for key in client.scan_iter(match=pattern, count=1000)]
        if keys:
            client.delete(*keys)
    finally:
        client.close()


UNREACHABLE_URL = "postgresql://jobs_worker@127.0.0.1:1/unreachable"


@pytest.fixture
def database_at(settings):
    """`with database_at(url, **limits):` this thread's connections, and those opened meanwhile
    by other threads, go to `url` (UNREACHABLE_URL: a closed port), with other db.Limits."""
    import db

    @contextmanager
    def at(url: str, **limits):
        db.database.close()
        db.configure(url, dataclasses.replace(settings.db_limits(), **limits))
        try:
            yield
        finally:
            db.database.close()
            db.configure(settings.database_url, settings.db_limits())

    return at


@pytest.fixture
def admin_db(settings, database):
    """A connection to the test database as the administrator, whom row-level security does not
    bind; one per test, since some tests cut every connection of the database."""
    conn = psycopg2.connect(settings.admin_database_url)
    conn.autocommit = True
    yield conn
    conn.close()


@pytest.fixture
def held_row(settings):
    """`held_row(job_id)` locks the job's row in another session until `held_row.release()`: a
    status write of that job then blocks where it stands, and the writes behind it queue up."""
    conn = psycopg2.connect(settings.admin_database_url)

    def hold(job_id: str) -> None:
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1 FROM job_status WHERE job_id = %s FOR UPDATE", (job_id,))

    hold.release = conn.commit
    yield hold
    conn.close()


@dataclass(frozen=True)
class Org:
    id: str
    admin: str
    members: list[str]
    course: str


@pytest.fixture(autouse=True)
def tenants(settings, admin_db) -> SimpleNamespace:
    """A clean database holding the seed's two organizations, and the configured limits of the
    workers' calls (a test may change them: tests.helpers.worker_limits) and retention; the
    counters of /metrics at zero."""
    from db import retention, worker_limits
    from db.fixtures import seed

    with admin_db.cursor() as cursor:
        cursor.execute(
            "TRUNCATE job_events, job_status, workers, course_modules, courses, users, organizations,"
            " job_metrics, worker_reports RESTART IDENTITY CASCADE"
        )
        worker_limits.write(cursor, settings.worker_limits())
        retention.write(cursor, settings.retention())
    orgs = []
    for org in seed(settings.admin_database_url)["organizations"]:
        users = org["users"]
        orgs.append(
            Org(
                id=org["id"],
                admin=next(u["id"] for u in users if u["role"] == "admin"),
                members=[u["id"] for u in users if u["role"] == "member"],
                course=org["courses"][0]["id"],
            )
        )
    return SimpleNamespace(acme=orgs[0], globex=orgs[1])


@contextmanager
def installed(broker):
    """Makes `broker` the one every job type sends to and runs from, for one test."""
    import actors
    from middleware import ProgressMiddleware

    # Bound first: a broker flushes only the queues it has declared, which binding the actors does.
    actors.use_broker(broker)
    broker.flush_all()
    yield broker
    for middleware in broker.middleware:
        if isinstance(middleware, ProgressMiddleware):
            assert middleware.writer.close(timeout=10), "progress writer did not flush"
    broker.flush_all()
    broker.close()


@contextmanager
def running(broker, threads: int, *, leased: bool = True):
    """A worker of `threads` threads on `broker`, ready once its first heartbeat gave it a lease
    (`leased=False`: at once, for a worker that can't reach the database)."""
    from dramatiq import Worker

    from middleware import LeaseKeeper
    from tests.helpers import wait_for

    worker = Worker(broker, worker_threads=threads, worker_timeout=50)
    worker.start()
    try:
        if leased:
            lease = next(m for m in broker.middleware if isinstance(m, LeaseKeeper)).lease
            wait_for(lease.live, what="the worker's first heartbeat to give it a lease")
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def stub_broker(settings):
    from actors.broker import build_broker

    with installed(build_broker(settings, stub=True)) as broker:
        yield broker


@pytest.fixture
def stub_worker(stub_broker):
    with running(stub_broker, threads=4) as worker:
        yield worker


@pytest.fixture
def redis_broker(settings):
    from actors.broker import build_broker

    with installed(build_broker(settings)) as broker:
        yield broker


@pytest.fixture
def redis_worker(redis_broker):
    with running(redis_broker, threads=8) as worker:
        yield worker


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def handle(self, record: logging.LogRecord) -> bool:
        # No lock: an Abort landing in a worker thread must not leave one held (see middleware/log_format.py).
        self.records.append(record)
        return True


@pytest.fixture
def log_records():
    """Every log record of the test, structlog's and Dramatiq's alike."""
    handler = _Collect()
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.DEBUG)
    yield handler.records
    root.removeHandler(handler)
    root.setLevel(level)
