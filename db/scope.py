"""Queries on behalf of one user: PostgreSQL's row-level security decides what they see.

Inside `as_user(user_id)` the connection has taken the jobs_user role and the user's id for one
transaction only (`SET LOCAL`), so the policies of 0006_tenant_isolation.sql apply to every
statement, whatever it asks for. When the transaction ends, committed or not, the connection is
the worker's again and carries no identity into the next one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from uuid import UUID

from .connection import database
from .errors import ScopeError, UnknownUser
from .queries import parse_uuid

USER_ROLE = "jobs_user"


@dataclass(frozen=True)
class Viewer:
    user_id: UUID
    organization_id: UUID
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def may_act_as_users() -> bool:
    """Whether this connection's login may take the users' role (jobs_service may, jobs_worker
    may not: 0014_service_role.sql)."""
    return bool(database.execute_sql("SELECT pg_has_role(current_user, %s, 'MEMBER')", (USER_ROLE,)).fetchone()[0])


@contextmanager
def as_user(user_id: object) -> Iterator[Viewer]:
    """Runs the statements of the block in one transaction, as `user_id` and with their rights.

    Raises UnknownUser for an id that names no user, before anything else runs: an empty or
    blank one and None included, so that a missing identity is never "no one in particular".
    """
    key = parse_uuid(user_id)
    if key is None:
        raise UnknownUser(user_id)
    if database.in_transaction():
        # SET LOCAL lasts until the outer transaction ends, past the end of this block.
        raise ScopeError("as_user() must open its own transaction, not run inside another one")
    with database.atomic():
        # One round trip: the user's row is read with the worker's rights, and only if it
        # exists does the same statement take on the user's role and identity.
        row = database.execute_sql(
            "SELECT organization_id, role, set_config('role', %s, true), set_config('jobs.user_id', id::text, true)"
            " FROM users WHERE id = %s",
            (USER_ROLE, str(key)),
        ).fetchone()
        if row is None:
            raise UnknownUser(user_id)
        yield Viewer(key, row[0], row[1])
