"""No password reaches a log line or an error message."""

from __future__ import annotations

import io
import logging

import pytest
import structlog

from db.redact import mask_secrets, mask_url
from middleware.log_format import handler_for
from middleware.settings import Settings
from tests.support.cli import jobctl

SECRET = "pw-s3cret"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://jobs:pw-s3cret@db:5432/jobs", "postgresql://jobs:***@db:5432/jobs"),
        ("redis://:pw-s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("postgresql://jobs@db/jobs", "postgresql://jobs@db/jobs"),
        ("postgresql//jobs:pw-s3cret@db/jobs", "postgresql//jobs:***@db/jobs"),  # a malformed one too
        ("postgresql://jobs:pw-s3cret@db:notaport/jobs", "postgresql://jobs:***@db:notaport/jobs"),
        ("host=db user=jobs password=pw-s3cret", "host=db user=jobs password=***"),
    ],
)
def test_urls_are_shown_without_their_password(url, shown):
    assert mask_url(url) == shown


def test_a_password_quoted_in_an_error_is_masked():
    quoted = 'FATAL:  database "postgresql//jobs:pw-s3cret@db/jobs" does not exist'
    assert mask_secrets(quoted) == 'FATAL:  database "postgresql//jobs:***@db/jobs" does not exist'


def test_the_worker_describes_what_it_connects_to_without_passwords():
    settings = Settings(
        database_url=f"postgresql://jobs_worker:{SECRET}@db/jobs", redis_url=f"redis://:{SECRET}@r:6379/0"
    )
    assert settings.describe() == {
        "database": "postgresql://jobs_worker:***@db/jobs",
        "redis": "redis://:***@r:6379/0",
        "namespace": "jobs",
    }


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_rendered_lines_mask_passwords_in_fields_messages_and_tracebacks(fmt):
    out = io.StringIO()
    logger = logging.getLogger("tests.redaction")
    logger.propagate = False
    logger.addHandler(handler_for(fmt, out))
    try:
        url = f"postgresql://jobs:{SECRET}@db/jobs"
        structlog.get_logger("tests.redaction").warning("database_unreachable", error=f'database "{url}" is gone')
        try:
            raise RuntimeError(f"could not connect to {url}")
        except RuntimeError:
            logger.exception("Failed with %s", url)
    finally:
        logger.handlers.clear()
    rendered = out.getvalue()
    assert "database_unreachable" in rendered and "could not connect" in rendered
    assert SECRET not in rendered
    assert "jobs:***@db/jobs" in rendered


def test_jobctl_reports_an_unreachable_database_without_the_password(tenants):
    # libpq takes a URL it can't parse for a database name, and the server quotes it back.
    ran = jobctl("list", "--operator", env={"DATABASE_URL": f"postgresql//jobs_worker:{SECRET}@127.0.0.1/jobs"})
    assert ran.returncode == 1
    assert ran.stderr.startswith("error: database unreachable:") and ran.stderr.count("\n") == 1
    assert SECRET not in ran.stderr + ran.stdout and "jobs_worker:***@" in ran.stderr


def test_jobctl_reports_a_malformed_admin_url_in_one_line_without_the_password(tenants):
    ran = jobctl("seed", env={"ADMIN_DATABASE_URL": f"postgresql//postgres:{SECRET}@127.0.0.1/jobs"})
    assert (ran.returncode, ran.stdout) == (2, "")
    assert ran.stderr.startswith("error: invalid dsn") and ran.stderr.count("\n") == 1
    assert SECRET not in ran.stderr


def test_jobctl_migrate_reports_a_refused_connection_in_one_line(tenants):
    ran = jobctl("migrate", env={"ADMIN_DATABASE_URL": f"postgresql://postgres:{SECRET}@127.0.0.1:1/jobs"})
    assert ran.returncode == 1
    assert ran.stderr.startswith("error: database unreachable:") and ran.stderr.count("\n") == 1
    assert SECRET not in ran.stderr
