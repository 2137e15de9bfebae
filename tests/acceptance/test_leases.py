"""Leases with real worker processes: whatever cuts a worker off, for however long, a job is
never run twice at once, and nothing it held stays stuck.

Workers reach PostgreSQL through a proxy that the test cuts (tests/support/proxy.py); the jobs
report their executions to Redis (tests/support/witness.py), a witness apart from the database.
"""

from __future__ import annotations

import os
import signal

import pytest

from actors.broker import bind
from db.audit import overlapping_executions
from db.connection import database
from jobs import service
from middleware.unacked import consumers
from tests.acceptance.conftest import HEARTBEAT_S, WITNESS, holder_pid, worker_row
from tests.helpers import all_terminal, events, job_row, wait_for
from tests.support.proxy import Proxy
from tests.support.witness import executions, overlaps, release, witnessed_job

# A pass of the reaper may come late on a loaded machine; without leases it came minutes late.
SLACK_S = 2.0


@pytest.fixture
def witnessed(redis_broker, tenants):
    bind(redis_broker, [witnessed_job])

    def send(**kwargs) -> str:
        return witnessed_job.send_with_options(kwargs=kwargs, job_owner={"user_id": tenants.acme.members[0]}).message_id

    return send


@pytest.fixture
def postgres_proxy():
    with Proxy(("127.0.0.1", 5432)) as proxy:
        yield proxy


def through(proxy: Proxy, settings) -> dict[str, str]:
    return {"DATABASE_URL": proxy.url_for(settings.worker_database_url)}


def own_end(job_id: str, worker: str):
    """When the execution of `worker` ended, as the worker itself recorded it."""
    row = database.execute_sql(
        "SELECT coalesce((details->>'ended_at')::timestamptz, created_at) FROM job_events"
        " WHERE job_id = %s::uuid AND worker_id = %s AND event <> 'started' ORDER BY id LIMIT 1",
        (job_id, worker),
    ).fetchone()
    return row and row[0]


def starts(job_id: str) -> list[tuple]:
    return database.execute_sql(
        "SELECT worker_id, created_at FROM job_events WHERE job_id = %s::uuid AND event = 'started' ORDER BY id",
        (job_id,),
    ).fetchall()


def wait_for_execution(job_id: str) -> None:
    """Until the job's code runs: a start the database committed is not yet one its worker knows
    of (a cut that drops the reply leaves the job `active` with nothing running it); the witness
    hears from the code itself."""
    wait_for(lambda: executions(job_id), what="the job's first execution to run", timeout=30)


def acks(redis_broker, broker_id: str) -> set[str]:
    """Job ids of the messages a consumer has taken and not acknowledged."""
    from dramatiq import Message

    key = f"{redis_broker.namespace}:__acks__.{broker_id}.default"
    redis_ids = redis_broker.client.smembers(key)
    bodies = redis_broker.client.hmget(f"{redis_broker.namespace}:default.msgs", list(redis_ids)) if redis_ids else []
    return {Message.decode(body).message_id for body in bodies if body}


def exactly(count: int, found):
    return found if len(found) == count else None


def active(job_ids: list[str]) -> list[str]:
    return [job_id for job_id in job_ids if job_row(job_id)["status"] == "active"]


def test_prefetched_messages_of_a_killed_worker_come_back_with_its_running_jobs(
    workers, witnessed, tenants, redis_broker
):
    # Dramatiq's own requeue never runs here (maintenance chance 0): only the reaper's can help.
    env = {"JOBS_BROKER_MAINTENANCE_CHANCE": "0"}
    victim = workers(threads=2, env=env, modules=(WITNESS,))  # takes 4 messages: 2 to run, 2 prefetched
    jobs = [witnessed() for _ in range(6)]  # each runs until released
    running = wait_for(lambda: exactly(2, active(jobs)), what="two jobs to run", timeout=30)
    holder = job_row(running[0])["worker_process"]
    broker_id = worker_row(holder)["broker_id"]
    held = wait_for(lambda: exactly(4, acks(redis_broker, broker_id)), what="the worker to take 4 messages")
    prefetched = held - set(running)

    os.kill(holder_pid(running[0]), signal.SIGKILL)
    assert victim.wait(timeout=30) != 0
    lease_ran_out = worker_row(holder)["lease_expires_at"]
    release(*jobs)
    workers(threads=6, env=env, modules=(WITNESS,))
    wait_for(all_terminal(jobs), what="every job to complete on the second worker", timeout=40)

    assert {job_row(j)["status"] for j in jobs} == {"completed"}
    for job_id in held:
        start = starts(job_id)[-1][1]
        # Back within the lease plus one heartbeat (and a loaded machine's slack), never before it ran out.
        assert lease_ran_out <= start, f"{job_id} started again before the lease of its worker ran out"
        assert (start - lease_ran_out).total_seconds() <= HEARTBEAT_S + SLACK_S, f"{job_id} came back late"
    for job_id in prefetched:
        assert [e[0] for e in events(job_id)] == ["enqueued", "started", "completed"], "never started by the victim"
    for job_id in running:
        assert [e[0] for e in events(job_id)] == ["enqueued", "started", "worker_lost", "started", "completed"]
    assert overlapping_executions(jobs) == []
    assert all(overlaps(job_id) == [] for job_id in jobs)


def test_worker_started_while_the_database_is_unreachable_runs_nothing_until_it_holds_a_lease(
    workers, tenants, redis_broker, postgres_proxy, settings
):
    postgres_proxy.cut(refuse=True)
    workers(threads=2, env=through(postgres_proxy, settings))
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0], args={"delay_ms": 200})
    # The worker has taken the message and holds it: it can't record a start without a lease.
    wait_for(
        lambda: any(job_id in acks(redis_broker, member) for member in consumers(redis_broker)),
        what="the worker to take the message",
        timeout=30,
    )
    assert job_row(job_id)["status"] == "pending"

    postgres_proxy.heal()
    wait_for(all_terminal([job_id]), what="the job to run once the worker holds a lease", timeout=30)
    assert [e[0] for e in events(job_id)] == ["enqueued", "started", "completed"]
    worker = worker_row(job_row(job_id)["worker_process"])
    assert worker["heartbeat_at"] is not None


def test_partition_a_cut_off_worker_stops_its_job_before_another_takes_it(
    workers, witnessed, redis_broker, postgres_proxy, settings
):
    cut_off = workers(threads=1, env=through(postgres_proxy, settings), modules=(WITNESS,))
    # Runs until released, querying PostgreSQL at every step: only its worker's lease can stop
    # it, and the partition blocks it inside a query, where no exception can reach it.
    job_id = witnessed(query_db=True)
    wait_for_execution(job_id)
    first = job_row(job_id)["worker_id"]

    postgres_proxy.cut()  # only this worker loses PostgreSQL; Redis and the others still reach it
    workers(threads=1, modules=(WITNESS,))
    wait_for(lambda: len(starts(job_id)) == 2, what="another worker to take the job", timeout=40)
    release(job_id)
    wait_for(all_terminal([job_id]), what="the other worker to run the job to the end", timeout=40)
    lease_ran_out = worker_row(first.split("/")[0])["lease_expires_at"]

    postgres_proxy.heal()
    wait_for(lambda: own_end(job_id, first), what="the cut-off worker to record when it stopped", timeout=30)
    assert job_row(job_id)["status"] == "completed"
    (_, started_first), (second, started_second) = starts(job_id)
    assert second != first
    assert own_end(job_id, first) < lease_ran_out <= started_second, "stopped before its lease ran out"
    assert overlaps(job_id) == [] and len(executions(job_id)) == 2
    assert overlapping_executions([job_id]) == []
    assert cut_off.poll() is None, "it stopped its job, though blocked in a query, and lives on"


def test_outage_longer_than_the_lease_every_worker_stops_and_the_job_completes_once_back(
    workers, witnessed, redis_broker, postgres_proxy, settings
):
    for _ in range(2):
        workers(threads=1, env=through(postgres_proxy, settings), modules=(WITNESS,))
    job_id = witnessed()  # runs until released: only its worker's lease can stop it
    wait_for_execution(job_id)
    first = job_row(job_id)["worker_id"]

    postgres_proxy.cut()  # every worker loses PostgreSQL
    wait_for(
        lambda: database.execute_sql("SELECT bool_and(lease_expires_at < clock_timestamp()) FROM workers").fetchone()[
            0
        ],
        what="every worker's lease to run out",
        timeout=30,
    )
    lease_ran_out = worker_row(first.split("/")[0])["lease_expires_at"]
    postgres_proxy.heal()
    wait_for(lambda: len(starts(job_id)) == 2, what="the job to start again once the database is back", timeout=40)
    release(job_id)
    wait_for(all_terminal([job_id]), what="the job to complete", timeout=40)
    wait_for(lambda: own_end(job_id, first), what="the first worker to record when it stopped", timeout=30)

    assert job_row(job_id)["status"] == "completed"
    assert own_end(job_id, first) < lease_ran_out, "the first execution stopped before its lease ran out"
    assert starts(job_id)[-1][1] >= lease_ran_out
    assert overlaps(job_id) == [] and len(executions(job_id)) == 2
    assert overlapping_executions([job_id]) == []


def test_a_job_that_cannot_be_interrupted_ends_its_worker_before_the_lease_runs_out(
    workers, witnessed, redis_broker, postgres_proxy, settings
):
    cut_off = workers(threads=1, env=through(postgres_proxy, settings), modules=(WITNESS,))
    job_id = witnessed(block_first_ms=30_000)
    wait_for_execution(job_id)
    first = job_row(job_id)["worker_id"]

    postgres_proxy.cut()
    release(job_id)  # for its next attempt: the first one blocks, and nothing can interrupt it
    assert cut_off.wait(timeout=30) == 75, "the worker ended itself (EXIT_LEASE_LOST)"
    workers(threads=1, modules=(WITNESS,))
    wait_for(all_terminal([job_id]), what="another worker to run the job", timeout=40)

    assert job_row(job_id)["status"] == "completed"
    lost = database.execute_sql(
        "SELECT created_at FROM job_events WHERE job_id = %s::uuid AND event = 'worker_lost'", (job_id,)
    ).fetchone()
    assert lost is not None and lost[0] >= worker_row(first.split("/")[0])["lease_expires_at"]
    assert overlapping_executions([job_id]) == []
    # (The witness can't tell when a blocked execution ended: the exit above, before the second
    # worker even started, is what proves it.)
    assert len(executions(job_id)) == 2


def test_messages_held_by_a_worker_cut_off_since_it_booted_run_elsewhere(
    workers, tenants, redis_broker, postgres_proxy, settings
):
    postgres_proxy.cut(refuse=True)  # for the whole test: this worker never records a lease
    cut_off = workers(threads=2, env=through(postgres_proxy, settings))
    jobs = [service.send_job("test_job", user_id=tenants.acme.members[0]) for _ in range(3)]
    wait_for(
        lambda: {job for member in consumers(redis_broker) for job in acks(redis_broker, member)} >= set(jobs),
        what="the cut-off worker to take every message",
        timeout=30,
    )

    workers(threads=2)
    wait_for(all_terminal(jobs), what="another worker to run them", timeout=40)
    assert {job_row(job_id)["status"] for job_id in jobs} == {"completed"}
    for job_id in jobs:
        assert [e[0] for e in events(job_id)] == ["enqueued", "started", "completed"]
    assert cut_off.poll() is None
