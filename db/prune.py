"""Deleting finished jobs past their retention, with their events: always through job_prune
(0020_operations.sql), a batch per transaction, so that no lock is held long enough to delay a
status write noticeably."""

from __future__ import annotations

from dataclasses import dataclass, field

from .connection import Limits, connect, database

FINISHED = ("completed", "failed", "cancelled")
MAX_BATCH = 10_000


@dataclass
class Pruned:
    """Jobs and events deleted (or, in a dry run, that would be), by status, and the batches."""

    jobs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FINISHED, 0))
    events: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FINISHED, 0))
    batches: int = 0

    @property
    def total_jobs(self) -> int:
        return sum(self.jobs.values())


def prune(
    admin_url: str,
    limits: Limits,
    *,
    statuses: list[str] | None = None,
    older_than_ms: int | None = None,
    batch: int = 500,
    dry_run: bool = False,
) -> Pruned:
    """Finished jobs of `statuses` (all three if None) that ended more than `older_than_ms` ago
    (None: each outcome's retention, db.retention) go, with their events, `batch` jobs a
    transaction until none is left; a dry run counts them, deleting nothing. As the administrator
    (`admin_url`): job_prune with an age of the caller's choosing is nobody else's."""
    if statuses is not None and (not statuses or not set(statuses) <= set(FINISHED)):
        raise ValueError(f"only finished jobs are pruned: {', '.join(FINISHED)}")
    if older_than_ms is not None and older_than_ms < 1:
        raise ValueError("the age to prune from must be more than 0")
    if not 1 <= batch <= MAX_BATCH:
        raise ValueError(f"a batch is 1 to {MAX_BATCH} jobs")
    pruned = Pruned()
    conn = connect(admin_url, limits)
    conn.autocommit = True  # each call its own transaction: a batch's locks go at once
    try:
        with conn.cursor() as cursor:
            while True:
                cursor.execute(
                    "SELECT status, jobs, events FROM job_prune(%s, %s, %s, %s)",
                    (statuses, older_than_ms, batch, dry_run),
                )
                rows = cursor.fetchall()
                pruned.batches += 1
                for status, jobs, events in rows:
                    pruned.jobs[status] += jobs
                    pruned.events[status] += events
                if dry_run or sum(jobs for _, jobs, _ in rows) < batch:
                    return pruned
    finally:
        conn.close()


def prune_expired(batch: int) -> int:
    """One batch of the jobs past the retention the database holds, on this thread's connection
    (the workers' periodic pass: job_prune_expired); how many went."""
    return database.execute_sql("SELECT job_prune_expired(%s)", (batch,)).fetchone()[0]
