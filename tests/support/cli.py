"""Runs `jobctl` as a user types it: the installed entry point, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

JOBCTL = Path(sys.executable).with_name("jobctl")


def jobctl(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """`jobctl ARGS...` with the test's environment (its database and Redis namespace), plus `env`."""
    return subprocess.run(
        [str(JOBCTL), *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )
