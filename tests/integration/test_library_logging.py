"""A service that imports the actors keeps its own logging: ours goes through the standard
library's loggers, to the service's handlers, and nowhere when it has none."""

from __future__ import annotations

import os
import subprocess
import sys

from db.connection import database


def service(code: str) -> subprocess.CompletedProcess:
    """Runs `code` as a service would, in a process of its own with the test's environment."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env={**os.environ}, check=False
    )


def test_a_service_without_logging_configured_prints_nothing(redis_broker, tenants):
    user = tenants.acme.members[0]
    sent = service(f"import actors\nfrom jobs import service\nservice.send_job('test_job', user_id='{user}')")
    assert sent.returncode == 0, sent.stderr
    assert (sent.stdout, sent.stderr) == ("", "")
    (row,) = database.execute_sql("SELECT status FROM job_status WHERE user_id = %s", (user,)).fetchall()
    assert row == ("pending",), "the job was sent all the same"


def test_a_service_with_its_own_logging_gets_our_lines_through_its_handlers(redis_broker, tenants):
    user = tenants.acme.members[0]
    sent = service(
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stderr, format='%(levelname)s %(name)s: %(message)s')\n"
        "import actors\n"
        "from jobs import service\n"
        f"print(service.send_job('test_job', user_id='{user}'))\n"
    )
    assert sent.returncode == 0, sent.stderr
    job_id = sent.stdout.strip()
    assert sent.stdout == f"{job_id}\n", "nothing of ours on stdout"
    (line,) = [line for line in sent.stderr.splitlines() if "job_enqueued" in line]
    assert line.startswith(f"INFO middleware.sends: job_enqueued job_id={job_id} "), "readable in a plain format"
