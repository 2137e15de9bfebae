"""A worker process's own numbers: counters and histograms that its threads update, and that its
report (middleware/report.py) sends to the database for /metrics to show (jobs/metrics.py).

Small and lock-guarded: an observation is a bisect and two additions. The bounds are shared with
the exporter, which checks a report against them.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

#: Writes in one group commit's transaction (db/group_commit.py: at most its max_batch, 64).
BATCH_BOUNDS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64)
#: Seconds a status hook waited for its write (middleware/awaited.py), retries included.
WRITE_SECONDS_BOUNDS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Counter:
    """A count that only grows, from any thread."""

    def __init__(self) -> None:
        self._value = 0
        self._lock = threading.Lock()

    def add(self, amount: int = 1) -> None:
        with self._lock:
            self._value += amount

    @property
    def value(self) -> int:
        return self._value


class Histogram:
    """Observations counted in buckets: an observation goes to the first bucket whose upper bound
    it does not exceed (Prometheus' `le`), or past the last one.

    Parameters:
      bounds: the buckets' upper bounds, increasing.
    """

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self._counts = [0] * (len(self.bounds) + 1)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        index = bisect_left(self.bounds, value)
        with self._lock:
            self._counts[index] += 1
            self._sum += value

    def snapshot(self) -> dict[str, Any]:
        """{"counts": per bucket, the last past every bound (not cumulative), "sum": ...}."""
        with self._lock:
            return {"counts": list(self._counts), "sum": self._sum}
