"""Real `dramatiq actors` worker processes, with leases short enough for a test to outlive."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.helpers import job_row

HEARTBEAT_S, WINDOW_S, MARGIN_S = 0.25, 2.0, 0.5
LEASE = {
    "JOBS_HEARTBEAT_S": str(HEARTBEAT_S),
    "JOBS_RECOVERY_WINDOW_S": str(WINDOW_S),
    "JOBS_LEASE_MARGIN_S": str(MARGIN_S),
}
# Idle worker and consumer threads wake this often (Dramatiq's default is 1 s): a worker told to
# stop does so in a fraction of a second.
QUICK_STOP = {"dramatiq_worker_timeout": "100"}
WITNESS = "tests.support.witness"


@pytest.fixture
def workers(redis_broker, tmp_path):
    """Starts `dramatiq actors` processes (`workers(threads=, env=, modules=)`); stops what is left."""
    started: list[subprocess.Popen] = []

    def start(
        *, threads: int = 2, env: dict[str, str] | None = None, modules: tuple[str, ...] = ()
    ) -> subprocess.Popen:
        log_path = tmp_path / f"worker-{len(started)}.log"
        with open(log_path, "w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "dramatiq", "actors", *modules, "--processes", "1", "--threads", str(threads)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **LEASE, **QUICK_STOP, "JOBS_LOG_FORMAT": "json", **(env or {})},
            )
        process.log_path = log_path
        started.append(process)
        return process

    yield start
    alive = [process for process in started if process.poll() is None]
    for process in alive:
        process.send_signal(signal.SIGTERM)
    for process in alive:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def holder_pid(job_id: str) -> int:
    """The pid of the worker process running the job (worker_id is host:pid:boot/thread)."""
    return int(job_row(job_id)["worker_id"].split(":")[1])
