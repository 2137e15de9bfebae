"""A real `jobctl serve` in a subprocess, on a free port, with the test's database and Redis
namespace: started as the demo starts it (jobs.demo_server), waited for until it says where it
listens, stopped as Ctrl-C stops it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from jobs.demo_server import DemoServer
from tests.support.cli import JOBCTL

#: The secret the suite's servers sign with (tokens minted in the tests use it too).
SECRET = b"the suite's secret: 32 bytes at least, 64 here so that HS512 can be tried too"
#: What the suite's scrapers present to /metrics (JOBS_METRICS_TOKEN).
METRICS_TOKEN = "the suite's metrics token: a scraper's secret, 32 bytes or more"


class Server(DemoServer):
    """`jobctl serve --port 0` with the suite's settings (and `env`), its log (JSON lines) in `log_path`."""

    def __init__(self, log_path: Path, env: dict[str, str] | None = None, *, timeout: float = 30.0) -> None:
        settings = {
            **os.environ,
            "JOBS_API_SECRET": SECRET.decode(),
            "JOBS_METRICS_TOKEN": METRICS_TOKEN,
            # A few connections per server: several pytest workers share one PostgreSQL.
            "JOBS_API_DB_THREADS": "3",
            # A stream says something every second: a test waiting on one sees its
            # deadline pass, instead of waiting on a silent socket.
            "JOBS_API_KEEPALIVE_S": "1",
            "JOBS_LOG_FORMAT": "json",
            "PYTHONFAULTHANDLER": "1",
            **(env or {}),
        }
        super().__init__(0, log_path, settings, timeout=timeout, command=str(JOBCTL))

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self, timeout: float = 30.0) -> int:
        """Ctrl-C; its exit code. A server that had to be killed fails the test."""
        code = super().stop(timeout)
        assert code != -signal.SIGKILL, f"jobctl serve did not stop within {timeout}s on SIGINT"
        return code
