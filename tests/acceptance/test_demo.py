"""`jobctl demo` on an 80x24 terminal: its live view redraws in place, never scrolls, and every
frame says where the worker logs are and holds links that sign a browser in to the demo's HTTP
server as a member, an admin and an operator, which work while the demo runs; the server stops
with the demo."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from collections.abc import Callable

import httpx
import pytest

from tests.acceptance.conftest import QUICK_STOP
from tests.support.cli import JOBCTL

HINT = "worker logs: .demo/workers.log  (17 jobs, 1 process x 8 threads)"
SIGN_IN = re.compile(r"sign in with a browser \(the server: (http://[\d.:]+), its log: \.demo/server\.log\):")
LINK = re.compile(
    r"  (member alice@acme\.example|admin admin@acme\.example|operator demo): (http://\S+/login\?token=[\w.-]+)"
)


def run_in_terminal(
    args: list[str], *, cwd, rows: int, columns: int, timeout: float, watch: Callable[[str], None] | None = None
) -> tuple[int, str, str]:
    """Runs `args` with a terminal of that size as its stdout; returns its exit code, everything
    it wrote there, and its stderr. `watch` is given what it wrote so far, as it writes."""
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
            if watch is not None:
                watch(output.decode(errors="replace"))
        code = process.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
            process.wait()
    # The terminal turns each "\n" into "\r\n".
    return code, output.decode().replace("\r\n", "\n"), process.stderr.read().decode()


def rows_taken(line: str, columns: int) -> int:
    """The terminal's rows a line takes: a long link wraps."""
    return max(1, -(-len(line) // columns))


def test_the_live_view_redraws_in_place_within_80x24(redis_broker, tmp_path):
    signed_in: dict[str, object] = {}

    def sign_in(screen: str) -> None:
        """Follows each link of the first frame that holds them all, while the demo runs."""
        found = SIGN_IN.search(screen)
        links = dict(LINK.findall(screen))
        if signed_in or not found or len(links) < 3:
            return
        signed_in["server"] = found[1]
        for who, link in links.items():
            with httpx.Client(timeout=30) as browser:
                login = browser.get(link.replace("\x1b[K", ""))
                # A page that forwards to / (a redirect begun on another site would drop the
                # SameSite=Strict cookie), with the session cookie set.
                assert login.status_code == 200 and "jobs_session" in browser.cookies, login.text
                listed = browser.get(f"{found[1]}/api/jobs")
                assert listed.status_code == 200, listed.text
                signed_in[who] = listed.json()["jobs"]

    code, screen, errors = run_in_terminal(
        [str(JOBCTL), "demo", "--processes", "1", "--threads", "8", "--timeout", "60", "--port", "0"],
        cwd=tmp_path,
        rows=24,
        columns=80,
        timeout=90,
        watch=sign_in,
    )
    assert code == 0, errors or screen[-2000:]
    before, *frames = screen.split("\x1b[H")
    assert before == ""  # nothing that the first frame would paint over
    assert len(frames) >= 2
    for frame in frames[:-1]:
        lines = frame.removesuffix("\x1b[K\x1b[J").split("\x1b[K\n")
        # No newline after the last of at most 24 rows: the screen never scrolls.
        assert sum(rows_taken(line, 80) for line in lines) <= 24 and "\n" not in lines[-1]
        assert lines[0] == HINT
        assert SIGN_IN.fullmatch(lines[1]) and all(LINK.fullmatch(line) for line in lines[2:5]), lines[:5]
        # Every line but the links (which the terminal wraps) fits the width.
        assert max(map(len, lines[5:])) < 80
    last, after = frames[-1].split("\x1b[K\x1b[J")
    assert last.split("\x1b[K\n")[0] == HINT
    assert last.endswith("cancelled: 1  completed: 14  failed: 2")
    assert "all 17 jobs ended as expected" in after
    assert (tmp_path / ".demo" / "workers.log").stat().st_size > 0

    # Each link signed a browser in as its holder: the member sees the jobs the demo sent as them
    # (Acme's half), the admin every job of Acme, the operator every job.
    member, admin, operator = (
        signed_in[who] for who in ("member alice@acme.example", "admin admin@acme.example", "operator demo")
    )
    assert member and {job["user_id"] for job in member} == {member[0]["user_id"]}
    assert len(admin) >= len(member) and len({job["organization_id"] for job in admin}) == 1
    assert len(operator) == 17 and len({job["organization_id"] for job in operator}) == 2
    # The server stopped with the demo; its secret was made for it, readable by its owner only.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{signed_in['server']}/api/jobs", timeout=5)
    assert (tmp_path / ".demo" / "api_secret").stat().st_mode & 0o077 == 0


def test_a_demo_whose_server_cannot_start_says_why_in_one_line(redis_broker, tmp_path):
    done = subprocess.run(
        [str(JOBCTL), "demo", "--processes", "1", "--threads", "1", "--port", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **QUICK_STOP, "JOBS_API_SECRET": "too short"},
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr == (
        "error: the HTTP server did not start: JOBS_API_SECRET is 9 bytes long: it must be 32 bytes or more"
        " (e.g. `openssl rand -hex 32`) (its log: .demo/server.log)\n"
    )
    assert not (tmp_path / ".demo" / "api_secret").exists()  # the one it was given was used
