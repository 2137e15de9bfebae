"""Rows stored before the database's ceilings (0017) may hold JSON nested far deeper than Python
reads (json.loads gives up near 1,000 levels): every read of them survives, showing a marker
where the value was (db.stored_json), and the reaper and reconcile, which would publish such a
job again at every pass, fail it once, with a clear error."""

from __future__ import annotations

import json
import os

import psycopg2
import pytest

from db import queries, transitions
from db.stored_json import Unreadable
from jobs import service
from middleware.reaper import recover_lost_jobs
from middleware.reconcile import broker_job_ids, reconcile
from tests.helpers import alive, events, expire_lease, job_row, worker_limits
from tests.support.cli import jobctl

ALICE = "alice@acme.example"
WORKER = "host-a:1:boot/1"
# Deeper than Python reads, and than PostgreSQL's stack takes (~15,000 here) no more.
DEEP = "[" * 5_000 + "]" * 5_000
MARKER = "characters of JSON nested too deep to read"


def stored_before_the_ceilings(statement: str, params: tuple) -> None:
    """Runs `statement` as the administrator as it would have run before 0017: with the triggers
    of this one session off (session_replication_role; every other session keeps them)."""
    conn = psycopg2.connect(os.environ["ADMIN_DATABASE_URL"])
    try:
        with conn, conn.cursor() as cursor:
            cursor.execute("SET LOCAL session_replication_role = replica")
            cursor.execute(statement, params)
    finally:
        conn.close()


def make_deep(job_id: str) -> None:
    """The job's arguments and a new event's details, nested 5,000 deep."""
    stored_before_the_ceilings(
        "UPDATE job_status SET args = %s::jsonb, kwargs = %s::jsonb WHERE job_id = %s",
        (f"[{DEEP}]", f'{{"delay_ms": {DEEP}}}', job_id),
    )
    stored_before_the_ceilings(
        "INSERT INTO job_events (job_id, event, attempt, details) VALUES (%s, 'noted', 0, %s::jsonb)",
        (job_id, f'{{"note": {DEEP}}}'),
    )


@pytest.fixture
def deep_job(stub_broker, tenants) -> str:
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0], args={"delay_ms": 1})
    make_deep(job_id)
    return job_id


def test_the_services_reads_survive_a_row_too_deep_to_read(deep_job, tenants):
    owner, admin = tenants.acme.members[0], tenants.acme.admin
    job = service.get_job(deep_job, as_user=owner)
    assert isinstance(job["args"], Unreadable) and isinstance(job["kwargs"], Unreadable)
    assert MARKER in job["args"]["not_read"] and job["args"]["preview"].startswith("'[[[[")
    assert [row["job_id"] for row in service.list_jobs(as_user=admin)] == [job["job_id"]]
    row, history = service.show_job(deep_job, as_user=owner)
    assert [event["event"] for event in history] == ["enqueued", "noted"]
    assert MARKER in history[-1]["details"]["not_read"]
    assert service.job_history(deep_job, as_user=admin)[-1]["details"] == history[-1]["details"]
    assert isinstance(queries.get_job(deep_job)["args"], Unreadable)
    assert isinstance(queries.list_jobs()[0]["kwargs"], Unreadable)


def test_the_command_line_reads_survive_a_row_too_deep_to_read(deep_job):
    for args in (
        ("list", "--as", ALICE, "--json"),
        ("list", "--operator", "--json"),
        ("list", "--operator"),
        ("show", deep_job, "--as", ALICE),
        ("show", deep_job, "--operator", "--json"),
    ):
        done = jobctl(*args)
        assert (done.returncode, done.stderr) == (0, ""), (args, done.stderr[-500:])
        assert deep_job[:8] in done.stdout
        if args[0] == "show" or "--json" in args:
            assert MARKER in done.stdout, args
    shown = json.loads(jobctl("show", deep_job, "--as", ALICE, "--json").stdout)
    assert MARKER in shown["job"]["args"]["not_read"] and MARKER in shown["events"][-1]["details"]["not_read"]


def test_a_result_too_deep_to_read_is_read_as_a_marker(stub_broker, stub_worker, tenants):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    stub_broker.join("default")
    stub_worker.join()
    stored_before_the_ceilings("UPDATE job_status SET result = %s::jsonb WHERE job_id = %s", (DEEP, job_id))
    assert isinstance(service.get_job(job_id, as_user=tenants.acme.members[0])["result"], Unreadable)


def test_reconcile_fails_a_waiting_job_it_cannot_read_instead_of_sending_it_again(redis_broker, tenants):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0], args={"delay_ms": 1})
    redis_broker.flush_all()  # Redis lost its message
    make_deep(job_id)
    (acted,) = reconcile(redis_broker, grace_s=0)
    assert (acted.job_id, acted.outcome) == (job_id, "failed")
    row = job_row(job_id)
    assert (row["status"], row["error_type"]) == ("failed", "Unsendable")
    assert row["error_message"] == (
        "an argument nests lists and objects more than 100 deep, more than the database stores:"
        " it was stored before that limit, and can't be sent to a worker"
    )
    assert [event[:3] for event in events(job_id)][-1] == ("failed", "pending", "failed")
    assert broker_job_ids(redis_broker, {"default"}) == set(), "nothing was published"
    assert reconcile(redis_broker, grace_s=0) == [], "once"


def test_jobctl_reconcile_says_it_failed_a_job_it_cannot_read(redis_broker, tenants):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0], args={"delay_ms": 1})
    redis_broker.flush_all()
    make_deep(job_id)
    done = jobctl("reconcile", "--grace-s", "0")
    assert done.returncode == 0, done.stderr[-500:]
    assert "job_failed_unsendable" in done.stderr, "logged at ERROR, as every failed job is"
    assert f"{job_id}  test_job    failed: its stored arguments can't be sent (too deep)" in done.stdout
    assert job_row(job_id)["status"] == "failed"


def test_the_reaper_fails_a_running_job_it_cannot_read_instead_of_sending_it_again(stub_broker, tenants):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0], args={"delay_ms": 1})
    stub_broker.flush_all()  # the lost worker had taken its message
    alive(WORKER)
    assert transitions.mark_active(job_id, WORKER).applied
    make_deep(job_id)
    expire_lease(WORKER)
    worker_limits(max_deliveries=3)  # the database's: it has deliveries left to lose, so it would be sent again
    (reaped,) = recover_lost_jobs(stub_broker, window_s=30)
    assert (reaped.job_id, reaped.outcome) == (job_id, "failed")
    assert [event[:3] for event in events(job_id)][-2:] == [
        ("worker_lost", "active", "retrying"),
        ("failed", "retrying", "failed"),
    ]
    assert job_row(job_id)["error_type"] == "Unsendable"
    assert stub_broker.queues["default"].qsize() == 0, "nothing was published"


def test_a_worker_can_fail_no_job_whose_arguments_are_within_the_ceilings(stub_broker, tenants, as_worker):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0], args={"delay_ms": 1})
    before = events(job_id)
    with as_worker.cursor() as cursor:
        cursor.execute("SELECT outcome, status FROM job_fail_unsendable(%s)", (job_id,))
        assert cursor.fetchall() == [("rejected", "pending")]
    assert job_row(job_id)["status"] == "pending" and events(job_id) == before
