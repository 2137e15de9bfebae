"""Profiles of the server for scripts/bench_api.py --profile DIR: py-spy samples the server's
threads while they hold the GIL (its Python work, not its waits) during a phase; the samples go
to DIR/<phase>.txt (collapsed stacks, for flame graph tools), and the functions that took most
of them are printed.

py-spy is not one of the project's dependencies: `pip install py-spy` (it needs the right to
read another process's memory: root, or ptrace allowed).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

PY_SPY = Path(sys.executable).with_name("py-spy")


def available() -> str | None:
    """py-spy's path, if it is installed."""
    return str(PY_SPY) if PY_SPY.exists() else shutil.which("py-spy")


class Profile:
    """py-spy recording `pid` for `seconds` into `directory`/`name`.txt."""

    def __init__(self, pid: int, directory: Path, name: str, seconds: float) -> None:
        self.path = directory / (re.sub(r"[^\w]+", "_", name).strip("_") + ".txt")
        self.process = subprocess.Popen(
            [available() or "py-spy", "record", "--pid", str(pid), "--gil", "--nonblocking", "--rate", "500"]
            + ["--duration", str(max(1, round(seconds))), "--format", "raw", "--output", str(self.path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def summary(self, top: int = 12) -> list[str]:
        """Waits for the recording; the functions in the most samples (with what they call)."""
        self.process.wait(timeout=120)
        if not self.path.exists():
            return [f"    (py-spy wrote nothing: exit code {self.process.returncode})"]
        inclusive: Counter[str] = Counter()
        total = 0
        for line in self.path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            total += int(count)
            # Each frame once per sample, however deep the recursion.
            for frame in {_short(frame) for frame in stack.split(";")[1:]}:
                inclusive[frame] += int(count)
        wanted = [(frame, n) for frame, n in inclusive.most_common() if not _plumbing(frame)][:top]
        return [f"    {100 * n / max(total, 1):5.1f}%  {frame}" for frame, n in wanted]


def _short(frame: str) -> str:
    # "function (path/to/module.py:123)" -> "function (module.py)"
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit('/', 1)[-1].split(':')[0]})" if where else name


_PLUMBING = re.compile(
    r"threading\.py|thread\.py|base_events\.py|runners\.py|events\.py|_compat\.py|server\.py|jobctl|<module>"
    r"|^main \(__init__\.py\)|^_serve \(commands\.py\)"
)


def _plumbing(frame: str) -> bool:
    """Frames every sample passes through (threads, the event loop), which say nothing."""
    return bool(_PLUMBING.search(frame))
