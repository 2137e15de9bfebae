"""`jobctl demo` on an 80x24 terminal: its live view redraws in place, never scrolls, and every
frame says where the worker logs are."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time

from tests.acceptance.conftest import QUICK_STOP
from tests.support.cli import JOBCTL

HINT = "worker logs: .demo/workers.log  (17 jobs, 1 process x 8 threads)"


def run_in_terminal(args: list[str], *, cwd, rows: int, columns: int, timeout: float) -> tuple[int, str, str]:
    """Runs `args` with a terminal of that size as its stdout; returns its exit code, everything
    it wrote there, and its stderr."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    process = subprocess.Popen(
        args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE, env={**os.environ, **QUICK_STOP}
    )
    os.close(slave)
    output = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], deadline - time.monotonic())
            if not ready:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the process and every child holding the terminal are gone
                break
            if not chunk:
                break
            output += chunk
        code = process.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
            process.wait()
    # The terminal turns each "\n" into "\r\n".
    return code, output.decode().replace("\r\n", "\n"), process.stderr.read().decode()


def test_the_live_view_redraws_in_place_within_80x24(redis_broker, tmp_path):
    code, screen, errors = run_in_terminal(
        [str(JOBCTL), "demo", "--processes", "1", "--threads", "8", "--timeout", "60"],
        cwd=tmp_path,
        rows=24,
        columns=80,
        timeout=90,
    )
    assert code == 0, errors or screen[-2000:]
    before, *frames = screen.split("\x1b[H")
    assert before == ""  # nothing that the first frame would paint over
    assert len(frames) >= 2
    for frame in frames[:-1]:
        lines = frame.removesuffix("\x1b[K\x1b[J").split("\x1b[K\n")
        # No newline after the last of at most 24 lines: the screen never scrolls.
        assert len(lines) <= 24 and "\n" not in lines[-1]
        assert lines[0] == HINT
        assert max(map(len, lines)) < 80
    last, after = frames[-1].split("\x1b[K\x1b[J")
    assert last.split("\x1b[K\n")[0] == HINT
    assert last.endswith("cancelled: 1  completed: 14  failed: 2")
    assert "all 17 jobs ended as expected" in after
    assert (tmp_path / ".demo" / "workers.log").stat().st_size > 0
