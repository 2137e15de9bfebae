"""How long finished jobs are kept, by outcome (0020_operations.sql): one row, written by whoever
migrates (`jobctl migrate`, from JOBS_RETAIN_*_DAYS), read by job_prune, which the workers' periodic
pass calls. The workers never choose it: a compromised worker can't have history deleted early."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .connection import database, transaction

DAY_MS = 86_400_000


@dataclass(frozen=True)
class Retention:
    """Milliseconds each outcome is kept after the job ended; 0: for ever."""

    completed_ms: int = 30 * DAY_MS
    failed_ms: int = 90 * DAY_MS
    cancelled_ms: int = 90 * DAY_MS


def record(url: str, retention: Retention) -> bool:
    """Records `retention`, as the administrator `url` names; whether it changed."""
    with transaction(url) as cursor:
        return write(cursor, retention)


def write(cursor: Any, retention: Retention) -> bool:
    """`record`, with a cursor of an administrator's connection, in its transaction."""
    values = (retention.completed_ms, retention.failed_ms, retention.cancelled_ms)
    cursor.execute(
        "UPDATE job_retention SET completed_ms = %s, failed_ms = %s, cancelled_ms = %s, updated_at = clock_timestamp()"
        " WHERE (completed_ms, failed_ms, cancelled_ms) IS DISTINCT FROM (%s, %s, %s)",
        values * 2,
    )
    return cursor.rowcount > 0


def held() -> Retention:
    """The retention the database holds now."""
    row = database.execute_sql("SELECT completed_ms, failed_ms, cancelled_ms FROM job_retention").fetchone()
    return Retention(*row)


def describe(retention: Retention) -> str:
    """`completed 30 days, failed 90 days, cancelled for ever`."""
    return ", ".join(
        f"{status} {'for ever' if ms == 0 else f'{ms / DAY_MS:g} days'}"
        for status, ms in (
            ("completed", retention.completed_ms),
            ("failed", retention.failed_ms),
            ("cancelled", retention.cancelled_ms),
        )
    )
