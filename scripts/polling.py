"""Waiting for something another process does, for the scripts: poll against a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], *, what: str, timeout: float) -> T:
    """Polls `condition` until it returns something truthy, which it returns; exits saying
    `what` never happened."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.005)
    return value
