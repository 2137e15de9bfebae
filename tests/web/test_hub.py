"""The server's one listening connection, fanned out: a stream is woken for what concerns it,
and every stream once the connection is back after it was lost."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from db.notifications import Listener
from jobs import service
from tests.helpers import wait_for
from web.hub import Hub


async def woken(subscription, timeout: float = 10.0) -> bool:
    try:
        await asyncio.wait_for(subscription.woken.wait(), timeout)
    except TimeoutError:
        return False
    subscription.woken.clear()
    return True


def test_a_stream_is_woken_for_its_job_and_after_a_lost_connection(settings, admin_db, tenants):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    other = service.send_job("test_job", user_id=tenants.acme.members[0])

    async def scenario() -> None:
        hub = Hub(lambda: Listener(settings.database_url))
        mine, everything, unrelated = hub.subscribe(job_id), hub.subscribe(), hub.subscribe(other)
        hub.start()
        try:
            await asyncio.to_thread(wait_for, hub.listening.is_set, what="the hub to listen")
            for subscription in (mine, everything, unrelated):
                assert await woken(subscription), "woken once listening: what came before may be missed"
            with admin_db.cursor() as cursor:
                cursor.execute("UPDATE job_status SET progress = 5 WHERE job_id = %s", (job_id,))
            assert await woken(mine) and await woken(everything)
            assert mine.take_progressed() == [job_id] and everything.take_progressed() == [job_id]
            assert not unrelated.woken.is_set(), "another job's stream sleeps on"

            with admin_db.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'jobs-listener'"
                    " AND datname = current_database()"
                )
            for subscription in (mine, everything, unrelated):
                assert await woken(subscription), "every stream reads again once the connection is back"
            assert hub.streams == 3
            for subscription in (mine, everything, unrelated):
                hub.unsubscribe(subscription)
            assert hub.streams == 0
        finally:
            await asyncio.to_thread(hub.stop)

    # On a thread of its own: in a pytest worker that ran the browser tests, Playwright's loop
    # is already running on this one.
    with ThreadPoolExecutor(max_workers=1) as thread:
        thread.submit(asyncio.run, scenario()).result()
