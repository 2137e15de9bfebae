"""The server's one listening connection, fanned out: a stream is woken for what concerns it (a
stream of every job, for the jobs its viewer sees), and every stream once the connection is
back after it was lost."""

from __future__ import annotations

import asyncio
from uuid import uuid4

from db.notifications import Listener
from jobs import service
from tests.helpers import run_alone, wait_for
from web.hub import Audience, Hub


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

    run_alone(scenario())


def test_a_stream_of_every_job_is_woken_only_for_the_jobs_its_viewer_sees(settings, admin_db, tenants):
    acme, globex = tenants.acme, tenants.globex
    alices = service.send_job("test_job", user_id=acme.members[0])
    bobs = service.send_job("test_job", user_id=acme.members[1])
    globexs = service.send_job("test_job", user_id=globex.members[0])

    async def scenario() -> None:
        hub = Hub(lambda: Listener(settings.database_url))
        operator = hub.subscribe()
        admin = hub.subscribe(audience=Audience(acme.id))
        alice = hub.subscribe(audience=Audience(acme.id, acme.members[0]))
        other_admin = hub.subscribe(audience=Audience(globex.id))
        everyone = (operator, admin, alice, other_admin)
        hub.start()
        try:
            await asyncio.to_thread(wait_for, hub.listening.is_set, what="the hub to listen")
            for subscription in everyone:
                assert await woken(subscription)

            def progress(job_id: str, percent: int) -> None:
                with admin_db.cursor() as cursor:
                    cursor.execute("UPDATE job_status SET progress = %s WHERE job_id = %s", (percent, job_id))

            progress(bobs, 5)  # an Acme job that isn't Alice's
            assert await woken(operator) and await woken(admin)
            assert admin.take_progressed() == [bobs]
            progress(globexs, 5)
            assert await woken(operator) and await woken(other_admin)
            progress(alices, 5)
            assert await woken(operator) and await woken(admin) and await woken(alice)
            assert alice.take_progressed() == [alices] and other_admin.take_progressed() == [globexs]
            assert not other_admin.woken.is_set() and not alice.woken.is_set()

            # Anyone may NOTIFY: what names no job wakes no stream, and the hub listens on.
            with admin_db.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_notify('job_events', 'not a job'), pg_notify('job_progress', %s)", (str(uuid4()),)
                )
            progress(globexs, 6)
            assert await woken(other_admin) and await woken(operator)
            assert not admin.woken.is_set() and not alice.woken.is_set()
            assert hub.listening.is_set()
            for subscription in everyone:
                hub.unsubscribe(subscription)
            assert hub.streams == 0
        finally:
            await asyncio.to_thread(hub.stop)

    run_alone(scenario())
