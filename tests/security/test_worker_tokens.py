"""A worker acts only as itself (issue 12): probes as a compromised worker, code that runs as
jobs_worker and knows no other worker process's token, would make them (0016_worker_tokens.sql).
One test per hole: each passed, and did harm, while a worker's identity was a string its caller
chose and the numbers the rules run on were the caller's."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import timedelta

import psycopg2
import psycopg2.errors
import pytest

from db import transitions
from db.connection import database
from jobs import service
from middleware.reaper import recover_lost_jobs
from tests.conftest import UNREACHABLE_URL, running
from tests.helpers import alive, expire_lease, job_row, wait_for, worker_limits

# A live worker process of this test (it presents this process's token, as a worker's own
# connections present its own), and the thread of it that runs the job.
VICTIM = "host-a:1:boot"
HOLDER = f"{VICTIM}/1"


def held_job(tenants) -> str:
    """A job that the victim's thread runs now, under a live lease."""
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    alive(VICTIM)
    assert transitions.mark_active(job_id, HOLDER).applied
    return job_id


def last_event(job_id: str) -> tuple:
    return database.execute_sql(
        "SELECT event, worker_id, details FROM job_events WHERE job_id = %s::uuid ORDER BY id DESC LIMIT 1", (job_id,)
    ).fetchone()


ENDS = {
    "finish": "SELECT outcome FROM job_finish(%(job)s, 1, 'completed', %(worker)s, '{\"forged\": true}',"
    " NULL, NULL, NULL, 0)",
    "stop": "SELECT outcome FROM job_stop(%(job)s, 1, %(worker)s, 'abort', 0)",
    "lease_expired": "SELECT outcome FROM job_lease_expired(%(job)s, 1, %(worker)s, 0)",
}


@pytest.mark.parametrize("call", ENDS.values(), ids=list(ENDS))
def test_a_worker_cannot_end_another_workers_job_by_naming_it(stub_broker, tenants, worker_session, call):
    job_id = held_job(tenants)
    with worker_session().cursor() as cursor:
        cursor.execute(call, {"job": job_id, "worker": HOLDER})
        assert cursor.fetchone() == ("forbidden",)
    row = job_row(job_id)
    assert (row["status"], row["result"], row["worker_id"]) == ("active", None, HOLDER), "it runs on, as its holder's"
    # Recorded, but not as the holder's own event (the audit would take it for the end of its execution).
    event, writer, details = last_event(job_id)
    assert (event, writer, details["claimed_worker"]) == ("transition_rejected", None, HOLDER)
    shown = service.job_history(job_id, as_user=tenants.acme.members[0])
    assert VICTIM not in json.dumps(shown, default=str), "a tenant is not told the worker's name"
    assert transitions.mark_completed(job_id, 1, HOLDER, {"ok": True}).applied, "its holder still ends it"


def test_a_worker_cannot_finish_a_job_it_does_not_hold(stub_broker, tenants, worker_session):
    job_id = held_job(tenants)
    with worker_session().cursor() as cursor:  # another worker process, as itself
        cursor.execute("SELECT worker_heartbeat('host-b:2:boot', 'host-b', 2, 30000, NULL)")
        cursor.execute(ENDS["finish"], {"job": job_id, "worker": "host-b:2:boot/1"})
        assert cursor.fetchone() == ("rejected",)
    assert (job_row(job_id)["status"], last_event(job_id)[0]) == ("active", "transition_rejected")


def test_a_worker_cannot_release_another_workers_lease(stub_broker, tenants, worker_session):
    job_id = held_job(tenants)
    with (
        pytest.raises(psycopg2.errors.InsufficientPrivilege, match="recorded with another token"),
        worker_session().cursor() as cursor,
    ):
        cursor.execute("SELECT worker_stopped(%s, true)", (VICTIM,))
    # The lease runs on, so the reaper leaves the job to its worker: no second execution.
    assert recover_lost_jobs(stub_broker, window_s=0) == []
    assert job_row(job_id)["status"] == "active"
    stopped, live = database.execute_sql(
        "SELECT stopped_at, lease_expires_at > clock_timestamp() FROM workers WHERE worker_id = %s", (VICTIM,)
    ).fetchone()
    assert (stopped, live) == (None, True)


@pytest.mark.parametrize("token", ["random", None], ids=["another token", "no token"])
def test_a_worker_cannot_heartbeat_for_another_worker(stub_broker, tenants, worker_session, token):
    job_id = held_job(tenants)
    expire_lease(VICTIM)  # the victim died
    with pytest.raises(psycopg2.errors.InsufficientPrivilege), worker_session(token).cursor() as cursor:
        cursor.execute("SELECT worker_heartbeat(%s, 'host-a', 1, 30000, NULL)", (VICTIM,))
    # Its lease stays run out: its job is taken back, not held for ever.
    assert [job.job_id for job in recover_lost_jobs(stub_broker, window_s=0)] == [job_id]


def test_a_heartbeat_gets_no_longer_lease_than_the_database_gives(tenants, worker_session):
    with worker_session().cursor() as cursor:
        cursor.execute("SELECT worker_heartbeat('host-b:2:boot', 'host-b', 2, 3600000, NULL)")  # an hour
        assert cursor.fetchone() == (30_000,), "the suite's JOBS_RECOVERY_WINDOW_S, as `jobctl migrate` recorded it"
        cursor.execute("SELECT lease_expires_at - clock_timestamp() FROM workers WHERE worker_id = 'host-b:2:boot'")
        assert cursor.fetchone()[0] <= timedelta(seconds=30)
        worker_limits(max_lease_ms=5_000)
        cursor.execute("SELECT worker_heartbeat('host-c:3:boot', 'host-c', 3, 3600000, NULL)")
        assert cursor.fetchone() == (5_000,)


def test_the_reaper_takes_back_no_job_before_the_database_allows(stub_broker, tenants, worker_session, admin_db):
    live = held_job(tenants)
    # An active job whose worker has no row: the database's longest lease (30 s) judges it.
    unrecorded = service.send_job("test_job", user_id=tenants.acme.members[0])
    alive("old:6:x")
    assert transitions.mark_active(unrecorded, "old:6:x/1").applied
    with admin_db.cursor() as cursor:
        cursor.execute("DELETE FROM workers WHERE worker_id = 'old:6:x'")
    with worker_session().cursor() as cursor:
        # The only number left to the caller can only make a pass take less.
        cursor.execute("SELECT job_id FROM job_reap('infinity')")
        assert cursor.fetchall() == []
    assert (job_row(live)["status"], job_row(unrecorded)["status"]) == ("active", "active")


def test_a_reschedule_puts_a_job_off_no_further_than_a_send_may(stub_broker, tenants, worker_session):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    three_thousand_years_ms = 3000 * 366 * 86_400_000
    with worker_session().cursor() as cursor:
        cursor.execute("SELECT job_reschedule(%s, %s, '{}')", (job_id, three_thousand_years_ms))
        assert cursor.fetchone() == (True,)
    (within,) = database.execute_sql(
        "SELECT scheduled_for <= clock_timestamp() + interval '7 days' FROM job_status WHERE job_id = %s::uuid",
        (job_id,),
    ).fetchone()
    assert within, "JOBS_MAX_DELAY_MS: the longest delay of a send"


def test_a_reschedule_changes_no_option_of_a_job_but_its_retry_count(stub_broker, tenants, worker_session):
    from actors import test_job

    job_id = test_job.send_with_options(
        job_owner={"user_id": tenants.acme.members[0]}, max_retries=7, time_limit=60_000
    ).message_id
    forged = {"max_retries": 0, "time_limit": 1, "retries": 5, "on_failure": "initialize"}
    with worker_session().cursor() as cursor:
        cursor.execute("SELECT job_reschedule(%s, 0, %s)", (job_id, json.dumps(forged)))
    assert job_row(job_id)["options"] == {"max_retries": 7, "time_limit": 60_000}, "a pending job's retry count is 0"

    # A retry being scheduled moves the count up, by no more than the attempts started.
    alive(VICTIM)
    assert transitions.mark_active(job_id, HOLDER).applied
    assert transitions.mark_retrying(job_id, 1, HOLDER, transitions.Failure("E", "boom", "")).applied
    for asked in ({**forged, "retries": 1}, {"retries": 2}, {"retries": 0}):
        assert transitions.reschedule(job_id, 10, asked)
    options = job_row(job_id)["options"]
    assert (options["max_retries"], options["time_limit"], options["retries"]) == (7, 60_000, 1)


def test_a_late_writer_cannot_move_the_end_of_its_execution_before_its_start(stub_broker, tenants):
    job_id = held_job(tenants)
    expire_lease(VICTIM)
    assert recover_lost_jobs(stub_broker, window_s=0)
    alive(VICTIM)
    assert transitions.mark_active(job_id, f"{VICTIM}/2").attempts == 2
    # Attempt 1's late end says its execution ended 24 days ago, before it started; and the end
    # of an attempt 3 that never started, as long ago.
    for attempt in (1, 3):
        late = transitions.mark_completed(job_id, attempt, HOLDER, None, ended_ms_ago=2**31 - 1)
        assert late.outcome == "rejected"
    started, ended, never, refused_at = database.execute_sql(
        "SELECT (SELECT created_at FROM job_events WHERE job_id = %(job)s::uuid AND event = 'started' AND attempt = 1),"
        " (SELECT (details->>'ended_at')::timestamptz FROM job_events WHERE job_id = %(job)s::uuid"
        "   AND event = 'transition_rejected' AND details->>'writer_attempt' = '1'),"
        " (SELECT (details->>'ended_at')::timestamptz FROM job_events WHERE job_id = %(job)s::uuid"
        "   AND event = 'transition_rejected' AND details->>'writer_attempt' = '3'),"
        " (SELECT max(created_at) FROM job_events WHERE job_id = %(job)s::uuid)",
        {"job": job_id},
    ).fetchone()
    assert ended >= started
    assert never >= refused_at - timedelta(seconds=5), "not moved back at all"


def test_the_database_keeps_only_the_hash_of_a_token_and_no_session_sees_it(
    tenants, settings, database_at, worker_session
):
    from db import worker_token

    token = worker_token.current()
    # A worker process's own connection (the workers' role), as db.connection opens it.
    with database_at(settings.worker_database_url):
        transitions.heartbeat("host-c:3:boot", "host-c", 3, lease_ms=30_000, broker_id=None)
        # Another session of the same role reads what pg_stat_activity shows of every session:
        # the text of their last statements.
        with worker_session().cursor() as cursor:
            cursor.execute("SELECT query FROM pg_stat_activity WHERE datname = current_database()")
            shown = [query or "" for (query,) in cursor.fetchall()]
    assert any("worker_heartbeat" in query for query in shown), "the heartbeat's statement is visible to the role"
    assert not [query for query in shown if token in query]
    (kept,) = database.execute_sql("SELECT token_hash FROM workers WHERE worker_id = 'host-c:3:boot'").fetchone()
    assert bytes(kept) == hashlib.sha256(token.encode()).digest()


def test_the_token_is_in_no_log_line(stub_broker, tenants, log_records, database_at):
    from db import worker_token

    token = worker_token.current()
    # A worker of this process runs jobs (heartbeats, starts, ends: its connections present the token)
    job_ids = [
        service.send_job("test_job", user_id=tenants.acme.members[0], args=args)
        for args in ({}, {"should_fail": True}, {"fail_attempts": 1})
    ]
    with running(stub_broker, threads=2) as worker:
        stub_broker.join("default", fail_fast=False)
        worker.join()
    assert [job_row(job_id)["status"] for job_id in job_ids] == ["completed", "failed", "completed"]
    # and then can't reach the database at all (libpq's errors are logged).
    with database_at(UNREACHABLE_URL), running(stub_broker, threads=1, leased=False):
        wait_for(lambda: any(_event(r) == "heartbeat_failed" for r in log_records), what="a failed heartbeat")

    formatter = logging.Formatter()
    lines = [formatter.format(record) + repr(record.msg) + repr(record.args) for record in log_records]
    assert len(lines) > 20 and any("lease_acquired" in line for line in lines)
    assert not [line for line in lines if token in line]


def _event(record) -> str | None:
    return record.msg.get("event") if isinstance(record.msg, dict) else None
