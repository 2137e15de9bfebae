"""What the `initialize` job writes to a course, through the functions of
0013_writes_through_functions.sql: the workers' role can't write the tables itself."""

from __future__ import annotations

from .connection import database


def lock(course_id: str) -> str | None:
    """Locks the course's row until the transaction ends; its status, or None if it is gone."""
    row = database.execute_sql("SELECT course_lock(%s::uuid)", (course_id,)).fetchone()
    return row[0] if row else None


def add_module(course_id: str, position: int, title: str) -> None:
    database.execute_sql("SELECT course_add_module(%s::uuid, %s, %s)", (course_id, position, title))


def mark_initialized(course_id: str) -> None:
    database.execute_sql("SELECT course_mark_initialized(%s::uuid)", (course_id,))
