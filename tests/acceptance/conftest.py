"""Real `dramatiq actors` worker processes, with leases short enough for a test to outlive."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from db.connection import database
from tests.helpers import job_row

# The margin leaves a loaded machine (the suite runs 3 pytest workers a core, each with its own
# worker processes) a second to schedule the watchdog and the job's thread before the lease runs out.
HEARTBEAT_S, WINDOW_S, MARGIN_S = 0.25, 2.5, 1.0
LEASE = {
    "JOBS_HEARTBEAT_S": str(HEARTBEAT_S),
    "JOBS_RECOVERY_WINDOW_S": str(WINDOW_S),
    "JOBS_LEASE_MARGIN_S": str(MARGIN_S),
}
# Idle worker and consumer threads wake this often (Dramatiq's default is 1 s): a worker told to
# stop does so in a fraction of a second.
QUICK_STOP = {"dramatiq_worker_timeout": "100"}
WITNESS = "tests.support.witness"
# How workers are started: Dramatiq's CLI, or ours around it (its main process logs as ours do).
DRAMATIQ = ("-m", "dramatiq", "actors")
JOBS_WORKER = ("-m", "jobs.worker")


@pytest.fixture
def workers(redis_broker, tmp_path):
    """Starts `dramatiq actors` processes (`workers(threads=, env=, modules=, command=)`); stops what is left."""
    started: list[subprocess.Popen] = []

    def start(
        *,
        threads: int = 2,
        env: dict[str, str] | None = None,
        modules: tuple[str, ...] = (),
        command: tuple[str, ...] = DRAMATIQ,
    ) -> subprocess.Popen:
        log_path = tmp_path / f"worker-{len(started)}.log"
        with open(log_path, "w") as log:
            process = subprocess.Popen(
                [sys.executable, *command, *modules, "--processes", "1", "--threads", str(threads)],
                stdout=log,
                stderr=subprocess.STDOUT,
                # As a worker logs in: the workers' role, which can't act as a user.
                env={
                    **os.environ,
                    "DATABASE_URL": os.environ["WORKER_DATABASE_URL"],
                    **LEASE,
                    **QUICK_STOP,
                    "JOBS_LOG_FORMAT": "json",
                    **(env or {}),
                },
                start_new_session=True,  # its own process group: dramatiq's main process and its worker
            )
        process.log_path = log_path
        started.append(process)
        return process

    yield start
    # Whatever a test left running is killed outright (a graceful stop is tested on its own, and
    # costs Dramatiq's main process a second or two): its lease runs out, and nothing of it lasts
    # beyond this test's database rows and Redis namespace.
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def holder_pid(job_id: str) -> int:
    """The pid of the worker process running the job (worker_id is host:pid:boot/thread)."""
    return int(job_row(job_id)["worker_id"].split(":")[1])


def worker_row(worker_process: str) -> dict:
    row = database.execute_sql(
        "SELECT heartbeat_at, lease_expires_at, broker_id FROM workers WHERE worker_id = %s", (worker_process,)
    ).fetchone()
    assert row is not None, f"worker {worker_process} never recorded a heartbeat"
    return dict(zip(("heartbeat_at", "lease_expires_at", "broker_id"), row, strict=True))
