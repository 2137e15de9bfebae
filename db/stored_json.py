"""How a read turns stored JSON into Python: as psycopg2 does by default (json.loads), except that
a value nested too deep for Python to read comes back as an `Unreadable` marker, instead of a
RecursionError that fails the whole read.

The database refuses values nested more than 100 deep (0017_stored_limits.sql), but a row stored
before that may hold arguments nested 10,000 deep: json.loads gives up near 1,000 (the recursion
limit), and every read of that row failed with it (jobctl list and show, the service's reads, and
the reaper and reconcile, which read arguments to publish them again). Registered for every
connection of the process when `db` is imported.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg2.extras

from .excerpt import excerpt


class Unreadable(dict):
    """Stands for a stored JSON value that Python can't read, as a note that says so and shows
    its start: it prints and serializes as any other value, and a caller that must use the value
    itself (the reaper, reconcile) knows it by its type."""

    def __init__(self, text: str) -> None:
        super().__init__(not_read=f"{len(text)} characters of JSON nested too deep to read", preview=excerpt(text))


def loads(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        return Unreadable(text)


def is_unreadable(*values: Any) -> bool:
    return any(isinstance(value, Unreadable) for value in values)


def register() -> None:
    """Makes `loads` read json and jsonb (and arrays of them) on every connection of the process."""
    psycopg2.extras.register_default_json(globally=True, loads=loads)
    psycopg2.extras.register_default_jsonb(globally=True, loads=loads)
