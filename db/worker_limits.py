"""What the database decides for the workers' calls, whatever they ask (0016_worker_tokens.sql):
the longest lease, the delivery limit, the longest reschedule. One row, written by whoever
migrates (`jobctl migrate`, from its configuration), never by the workers themselves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WorkerLimits:
    #: The longest lease a heartbeat is given (JOBS_RECOVERY_WINDOW_S); also how long an active
    #: job whose worker the database has no row for is left alone before the reaper takes it.
    max_lease_ms: int = 30_000
    #: Deliveries a job may lose with its worker before it fails (JOBS_MAX_DELIVERIES).
    max_deliveries: int = 3
    #: The longest a reschedule (a retry's backoff) may put a waiting job off (JOBS_MAX_DELAY_MS).
    max_delay_ms: int = 604_800_000


def write(cursor: Any, limits: WorkerLimits) -> None:
    """Records `limits` (with a cursor of an administrator's connection): the next heartbeat,
    reap and reschedule of every worker go by them."""
    cursor.execute(
        "UPDATE worker_limits SET max_lease_ms = %s, max_deliveries = %s, max_delay_ms = %s,"
        " updated_at = clock_timestamp()",
        (limits.max_lease_ms, limits.max_deliveries, limits.max_delay_ms),
    )


def read(cursor: Any) -> WorkerLimits:
    cursor.execute("SELECT max_lease_ms, max_deliveries, max_delay_ms FROM worker_limits")
    return WorkerLimits(*cursor.fetchone())
