"""What the database decides for the workers' calls, whatever they ask (0016_worker_tokens.sql):
the longest lease, the delivery limit, the longest reschedule. One row, written by whoever
migrates (`jobctl migrate`, from its configuration), never by the workers themselves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .connection import transaction


@dataclass(frozen=True)
class WorkerLimits:
    #: The longest lease a heartbeat is given (JOBS_RECOVERY_WINDOW_S); also how long an active
    #: job whose worker the database has no row for is left alone before the reaper takes it.
    max_lease_ms: int = 30_000
    #: Deliveries a job may lose with its worker before it fails (JOBS_MAX_DELIVERIES).
    max_deliveries: int = 3
    #: The longest a reschedule (a retry's backoff) may put a waiting job off (JOBS_MAX_DELAY_MS);
    #: the database holds no more than its delay ceiling, 70 days (0021_tokens_and_ceilings.sql).
    max_delay_ms: int = 604_800_000


def record(url: str, limits: WorkerLimits) -> bool:
    """Records `limits`, as the administrator `url` names (after the migrations): the next
    heartbeat, reap and reschedule of every worker go by them. Whether they changed."""
    with transaction(url) as cursor:
        return write(cursor, limits)


def write(cursor: Any, limits: WorkerLimits) -> bool:
    """`record`, with a cursor of an administrator's connection, in its transaction."""
    cursor.execute(
        "UPDATE worker_limits SET max_lease_ms = %s, max_deliveries = %s, max_delay_ms = %s,"
        " updated_at = clock_timestamp()"
        " WHERE (max_lease_ms, max_deliveries, max_delay_ms) IS DISTINCT FROM (%s, %s, %s)",
        (limits.max_lease_ms, limits.max_deliveries, limits.max_delay_ms) * 2,
    )
    return cursor.rowcount > 0
