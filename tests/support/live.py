"""A `jobctl` command that keeps running (show --follow, list --watch), read line by line as it
prints, each wait bounded by a deadline."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable

from tests.support.cli import JOBCTL


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Live:
    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [str(JOBCTL), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # A command that doesn't end when told is made to say where it stands (see finish).
            env={**os.environ, "PYTHONFAULTHANDLER": "1", **(env or {})},
            # Ctrl-C as at a terminal: a suite started in the background (`cmd &` in a script)
            # hands its children SIGINT ignored, and Python then installs no handler for it.
            preexec_fn=_default_sigint,
        )
        #: Every line printed so far.
        self.lines: list[str] = []
        self._new: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self._new.put(line.rstrip("\n"))
        self._new.put(None)

    def wait_for_line(self, match: Callable[[str], bool], *, what: str, timeout: float = 15.0) -> str:
        """The next line printed that `match`es; fails if none comes within `timeout` seconds, or
        if the command ends first."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._new.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}; printed:\n" + "\n".join(self.lines)
                ) from None
            if line is None:
                self._new.put(None)
                raise AssertionError(f"the command ended before {what}; printed:\n" + "\n".join(self.lines))
            self.lines.append(line)
            if match(line):
                return line

    def wait_for_text(self, text: str, *, timeout: float = 15.0) -> str:
        return self.wait_for_line(lambda line: text in line, what=repr(text), timeout=timeout)

    def interrupt(self) -> None:
        """Ctrl-C."""
        self.process.send_signal(signal.SIGINT)

    def finish(self, timeout: float = 15.0) -> tuple[int, str]:
        """Waits for the command to end; its exit code and its stderr. The rest of its output is
        read into `lines`."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # faulthandler prints every thread's stack on SIGABRT.
            self.process.send_signal(signal.SIGABRT)
            self.process.wait(timeout=timeout)
            raise AssertionError(
                f"the command did not end within {timeout}s; its threads:\n" + self.process.stderr.read()
            ) from None
        while (line := self._new.get(timeout=timeout)) is not None:
            self.lines.append(line)
        self._new.put(None)
        return code, self.process.stderr.read()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=15)
        self.process.stdout.close()
        self.process.stderr.close()
