"""What the `initialize` job writes to a course, through the functions of
0017_stored_limits.sql: the workers' role can't write the tables itself, and the functions write
a course only for a running `initialize` job of that course, which each call names (its id and
attempt), and only on a session of the worker process that runs it (its worker token,
0021_tokens_and_ceilings.sql): a worker can't rewrite another organization's course, nor the
course of an initialization another worker runs."""

from __future__ import annotations

from dataclasses import dataclass

from .connection import database


@dataclass(frozen=True)
class Initialization:
    """The running job that initializes a course: each write names it, for the database to check."""

    job_id: str
    attempt: int
    course_id: str

    def lock(self) -> str | None:
        """Locks the course's row until the transaction ends; its status, or None if it is gone."""
        row = database.execute_sql(
            "SELECT course_lock(%s::uuid, %s, %s::uuid)", (self.job_id, self.attempt, self.course_id)
        ).fetchone()
        return row[0] if row else None

    def add_module(self, position: int, title: str) -> None:
        database.execute_sql(
            "SELECT course_add_module(%s::uuid, %s, %s::uuid, %s, %s)",
            (self.job_id, self.attempt, self.course_id, position, title),
        )

    def mark_initialized(self) -> None:
        database.execute_sql(
            "SELECT course_mark_initialized(%s::uuid, %s, %s::uuid)", (self.job_id, self.attempt, self.course_id)
        )
