"""What live views read (jobs.live, db.feed) and hear (db.notifications): every event once, in
each job's order, only what the viewer may see; announcements that carry ids and nothing else."""

from __future__ import annotations

import re
import time
from uuid import UUID

import psycopg2
import pytest

from db.feed import CursorTooOld
from db.notifications import CHANNELS, Listener
from jobs import service
from jobs.errors import JobNotFound
from jobs.live import Feed, Viewer
from middleware.progress import ProgressWriter
from tests.helpers import all_terminal, wait_for

OPERATOR = Viewer(operator=True)


def append_event(conn, job_id: str, event: str) -> None:
    """An event as the administrator appends it, in `conn`'s transaction (left open)."""
    with conn.cursor() as cursor:
        cursor.execute("INSERT INTO job_events (job_id, event, attempt) VALUES (%s, %s, 0)", (job_id, event))


def event_names(messages) -> list[tuple[str, str]]:
    return [(str(m.data["job_id"]), m.data["event"]) for m in messages if m.kind == "event"]


def test_a_notification_names_a_job_and_carries_nothing_of_it(admin_db, settings, stub_broker, stub_worker, tenants):
    listener = Listener(settings.database_url)
    try:
        job_id = service.send_job("test_job", user_id=tenants.acme.members[0], args={"delay_ms": 300})
        wait_for(all_terminal([job_id]), what="the job to finish")
        # Announcements arrive in commit order: this one comes after all of the job's.
        with admin_db.cursor() as cursor:
            cursor.execute("NOTIFY job_events, 'end-of-test'")
        heard = []
        wait_for(
            lambda: heard.extend(listener.wait(0.05)) or heard and heard[-1].job_id == "end-of-test",
            what="the announcements up to the test's own",
        )
    finally:
        listener.close()
    heard.pop()
    assert {n.channel for n in heard} == set(CHANNELS), "events and progress are both announced"
    for note in heard:
        assert note.job_id == job_id, f"a payload is the job's id and nothing else: {note!r}"


def test_an_event_committed_after_a_later_one_still_reaches_the_feed(admin_db, settings, tenants):
    """Ids are drawn at insert: an event with a smaller id can commit after one with a larger.
    A feed that went by ids would skip it; this one sends each event once, as it commits."""
    first = service.send_job("test_job", user_id=tenants.acme.members[0])
    second = service.send_job("test_job", user_id=tenants.acme.members[0])
    live = Feed(OPERATOR)
    assert live.open() == []
    slow = psycopg2.connect(settings.admin_database_url)
    try:
        append_event(slow, first, "slow_writer")  # draws the smaller id, commits last
        append_event(admin_db, second, "fast_writer")  # autocommit
        assert event_names(live.read()) == [(second, "fast_writer")]
        slow.commit()
    finally:
        slow.close()
    assert event_names(live.read()) == [(first, "slow_writer")]
    assert live.read() == []


def test_a_member_feed_holds_only_what_the_member_sees(admin_db, tenants):
    member, other_member = tenants.acme.members[0], tenants.acme.members[1]
    own = Feed(Viewer(UUID(member)))
    admin = Feed(Viewer(UUID(tenants.acme.admin)))
    for live in (own, admin):
        live.open()
    mine = service.send_job("test_job", user_id=member)
    theirs = service.send_job("test_job", user_id=other_member)
    elsewhere = service.send_job("test_job", user_id=tenants.globex.members[0])

    assert event_names(own.read()) == [(mine, "enqueued")]
    assert sorted(event_names(admin.read())) == sorted([(mine, "enqueued"), (theirs, "enqueued")])
    for job_id in (theirs, elsewhere):
        with pytest.raises(JobNotFound):
            Feed(Viewer(UUID(member)), job_id=job_id).open()
    # Progress announced for a job the member doesn't see gives nothing either.
    assert own.read(progressed=[theirs, elsewhere]) == []


def test_a_member_reads_no_stack_or_host(admin_db, stub_broker, stub_worker, tenants):
    member = tenants.acme.members[0]
    job_id = service.send_job("test_job", user_id=member, args={"should_fail": True})
    wait_for(all_terminal([job_id]), what="the job to fail")
    live = Feed(Viewer(UUID(member)), job_id=job_id)
    messages = live.open()
    assert live.finished, "a job's feed ends with the job"
    assert [m.data["event"] for m in messages if m.kind == "event"][-1] == "failed"
    for message in messages:
        assert "worker_id" not in message.data and "error_stack" not in message.data
    operators = Feed(OPERATOR, job_id=job_id).open()
    assert any(m.data.get("worker_id") for m in operators if m.kind == "event"), "operators see the workers"


def test_every_position_resumes_with_exactly_what_came_after_it(admin_db, tenants):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    for step in range(4):
        append_event(admin_db, job_id, f"history_{step}")
    live = Feed(OPERATOR, job_id=job_id, limit=2)
    opened = live.open()
    for step in range(5):
        append_event(admin_db, job_id, f"later_{step}")
    sent = [m for m in opened + live.read() if m.kind == "event"]
    names = [m.data["event"] for m in sent]
    assert names == ["enqueued"] + [f"history_{i}" for i in range(4)] + [f"later_{i}" for i in range(5)]

    for index, message in enumerate(sent):
        resumed = Feed(OPERATOR, job_id=job_id, cursor=message.cursor, limit=2)
        again = [m.data["event"] for m in resumed.open() + resumed.read() if m.kind == "event"]
        assert again == names[index + 1 :], f"resumed after {names[index]}"


def test_a_feed_of_every_job_pages_through_a_burst(admin_db, tenants):
    live = Feed(OPERATOR, limit=3)
    live.open()
    job_ids = service.send_jobs("test_job", [{}] * 10, user_id=tenants.acme.members[0])
    assert sorted(job_id for job_id, _ in event_names(live.read())) == sorted(job_ids)


def test_a_cursor_from_too_far_back_is_refused(admin_db):
    from db import feed

    start = feed.now()
    for _ in range(5):
        with admin_db.cursor() as cursor:
            cursor.execute("SELECT pg_current_xact_id()")  # a transaction of its own, each
    assert feed.changes(start, max_age_xids=100)[0] == []
    with pytest.raises(CursorTooOld):
        feed.changes(start, max_age_xids=2)


def test_a_job_reporting_in_a_tight_loop_is_written_a_few_times_a_second(admin_db, settings, tenants, monkeypatch):
    from db import transitions

    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    writes = []
    monkeypatch.setattr(transitions, "record_progress", lambda *args: writes.append(args) or True)
    writer = ProgressWriter(capacity=10, interval_s=0.2)
    started = time.monotonic()
    for percent in range(1000):
        writer.submit(job_id, 1, percent % 100, f"step {percent}")
    assert writer.flush(timeout=10)
    elapsed = time.monotonic() - started
    writer.close(timeout=10)
    # One write per pause at most (and the flush's), however fast the job reports.
    assert 1 <= len(writes) <= elapsed / 0.2 + 2, f"{len(writes)} writes in {elapsed:.2f} s"
    assert writes[-1] == (job_id, 1, 999 % 100, "step 999"), "the newest report is the one kept"


def test_a_snapshot_cursor_is_checked(admin_db):
    from db.feed import Cursor

    for bad in ("", "1:2", "x:1:", "1:1:1,", "1:1:" + ",".join(["1"] * 1001)):
        with pytest.raises(ValueError):
            Cursor(bad)
    assert re.fullmatch(r"\d+:\d+:[\d,]*", Cursor("1:1:").seen)
