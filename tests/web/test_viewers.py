"""Who a token's user is, read at most once per VIEWER_TTL_S: a role changed meanwhile is seen
once that time has passed, and a user who isn't one is refused every time, never remembered."""

from __future__ import annotations

import uuid

import pytest

from db.errors import UnknownUser
from tests.helpers import run_alone
from web.database import DatabaseThreads
from web.viewers import Viewers


def test_a_viewer_is_read_again_once_its_time_has_passed(admin_db, tenants):
    alice = tenants.acme.members[0]

    async def scenario() -> None:
        threads = DatabaseThreads(1)
        try:
            remembered, forgetful = Viewers(ttl_s=3600), Viewers(ttl_s=0)
            for viewers in (remembered, forgetful):
                first = await viewers.get(threads, alice)
                assert (str(first.organization_id), first.role) == (tenants.acme.id, "member")
            with admin_db.cursor() as cursor:
                cursor.execute("UPDATE users SET role = 'admin' WHERE id = %s", (alice,))
            assert (await remembered.get(threads, alice)).role == "member"  # within its time
            assert (await forgetful.get(threads, alice)).role == "admin"

            nobody = str(uuid.uuid4())
            for _ in range(2):
                with pytest.raises(UnknownUser):
                    await remembered.get(threads, nobody)
        finally:
            threads.close()

    run_alone(scenario())


def test_the_oldest_viewers_are_forgotten_first(tenants):
    async def scenario() -> None:
        threads = DatabaseThreads(1)
        try:
            viewers = Viewers(ttl_s=3600, kept=2)
            for user in (*tenants.acme.members, tenants.acme.admin):
                await viewers.get(threads, user)
            assert list(viewers._read) == [tenants.acme.members[1], tenants.acme.admin]
        finally:
            threads.close()

    run_alone(scenario())
