"""A real `jobctl serve` in a subprocess, on a free port, with the test's database and Redis
namespace: started once, waited for until it says where it listens, stopped as Ctrl-C stops it."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
from pathlib import Path

from tests.support.cli import JOBCTL

#: The secret the suite's servers sign with (tokens minted in the tests use it too).
SECRET = b"the suite's secret: 32 bytes at least, 64 here so that HS512 can be tried too"
#: What the suite's scrapers present to /metrics (JOBS_METRICS_TOKEN).
METRICS_TOKEN = "the suite's metrics token: a scraper's secret, 32 bytes or more"
_LISTENING = re.compile(r"listening on (http://\S+) ")


class Server:
    """`jobctl serve --port 0`, its log (JSON lines) in `log_path`."""

    def __init__(self, log_path: Path, env: dict[str, str] | None = None, *, timeout: float = 30.0) -> None:
        self.log_path = log_path
        with open(log_path, "w") as log:
            self.process = subprocess.Popen(
                [str(JOBCTL), "serve", "--port", "0"],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env={
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
                },
            )
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(lines,), daemon=True).start()
        try:
            self.url = self._wait_for_url(lines, timeout)
        except BaseException:
            self.stop()
            raise

    def _read(self, lines: queue.Queue[str | None]) -> None:
        for line in self.process.stdout:
            lines.put(line)
        lines.put(None)

    def _wait_for_url(self, lines: queue.Queue[str | None], timeout: float) -> str:
        try:
            while (line := lines.get(timeout=timeout)) is not None:
                found = _LISTENING.search(line)
                if found:
                    return found[1]
        except queue.Empty:
            raise AssertionError(f"jobctl serve did not listen within {timeout}s; its log:\n{self.log()}") from None
        raise AssertionError(f"jobctl serve ended before it listened; its log:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self, timeout: float = 30.0) -> int:
        """Ctrl-C; its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
                raise AssertionError(f"jobctl serve did not stop within {timeout}s on SIGINT") from None
        self.process.stdout.close()
        return self.process.returncode
