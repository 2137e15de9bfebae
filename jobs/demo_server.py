"""The demo's HTTP server (`jobctl serve`) and the links that sign a browser in to it.

Both run as the command line runs them, in processes of their own: the demo is a newcomer's
first look at the system, and this is how they will start the server and mint tokens
themselves (and `jobs` sits below `web`: it imports none of it).
"""

from __future__ import annotations

import os
import queue
import re
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from db.redact import mask_secrets

from .cli.common import Failure

#: What `jobctl serve` prints once it listens (web.server).
_LISTENING = re.compile(r"listening on (http://\S+) ")
SECRET_FILE = "api_secret"


class ServerFailed(Failure):
    """The server did not start (or a link could not be made): one line that says why, and where
    the server's log is; exit code 1."""


def jobctl() -> str:
    """The `jobctl` installed beside this Python (the virtualenv's), else the one on the PATH."""
    beside = Path(sys.executable).with_name("jobctl")
    return str(beside) if beside.exists() else "jobctl"


def api_secret(directory: Path, env: Mapping[str, str]) -> str:
    """JOBS_API_SECRET if it is set; otherwise the demo's own, made once in `directory` (readable
    by its owner only) and kept, so that links from an earlier run stay valid until they expire."""
    if env.get("JOBS_API_SECRET", "").strip():
        return env["JOBS_API_SECRET"]
    path = directory / SECRET_FILE
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    secret = secrets.token_hex(32)
    with os.fdopen(descriptor, "w") as file:
        file.write(secret + "\n")
    return secret


class DemoServer:
    """`jobctl serve` on 127.0.0.1:`port` (0: any free port), its log in `log_path`; `command`:
    another `jobctl` than this Python's (a benchmark measuring another checkout). The suite's
    and the benchmarks' servers are started this way too."""

    def __init__(
        self,
        port: int,
        log_path: Path,
        env: Mapping[str, str],
        *,
        timeout: float = 60.0,
        command: str | None = None,
    ) -> None:
        self.log_path = log_path
        self.env = dict(env)
        with open(log_path, "w") as log:
            self.process = subprocess.Popen(
                [command or jobctl(), "serve", "--port", str(port)],
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                text=True,
                env=self.env,
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
                if found := _LISTENING.search(line):
                    return found[1]
        except queue.Empty:
            raise ServerFailed(
                f"the HTTP server did not listen within {timeout:.0f} s (its log: {self.log_path})"
            ) from None
        self.process.wait()
        raise ServerFailed(f"the HTTP server did not start: {self._last_error()} (its log: {self.log_path})")

    def _last_error(self) -> str:
        lines = [line for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
        # jobctl's own one-line error, as it printed it (`error: ...`).
        return (
            mask_secrets(lines[-1].strip().removeprefix("error: ")) if lines else f"exit code {self.process.returncode}"
        )

    def sign_in_links(self, who: list[tuple[str, list[str]]]) -> list[tuple[str, str]]:
        """For each (label, `jobctl token` arguments), a link that signs a browser in as them."""

        def link(arguments: list[str]) -> str:
            done = subprocess.run(
                [jobctl(), "token", *arguments, "--login-url", "--base-url", self.url],
                capture_output=True,
                text=True,
                timeout=60,
                env=self.env,
            )
            if done.returncode != 0:
                raise ServerFailed(f"jobctl token {' '.join(arguments)}: {done.stderr.strip()}")
            return done.stdout.strip()

        with ThreadPoolExecutor(len(who)) as pool:  # each jobctl takes a second to start
            return list(zip([label for label, _ in who], pool.map(link, [args for _, args in who]), strict=True))

    def stop(self, timeout: float = 30.0) -> int:
        """As Ctrl-C stops it: the requests under way finish (a browser's streams are closed);
        killed if it has not ended within `timeout`. Its exit code (-SIGKILL: it was killed)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode
