"""Cancellation through the real Redis broker and dramatiq-abort's Redis backend."""

from __future__ import annotations

import queue
import random
import threading
import time

import dramatiq
import pytest
from dramatiq_abort import Abortable

from db.connection import database
from jobs import service
from jobs.errors import JobAlreadyFinished
from tests.conftest import running
from tests.helpers import (
    all_terminal,
    broken_rows,
    events,
    job_row,
    out_of_order_events,
    statuses,
    wait_for,
    waiting_on_locks,
)


def abort_keys(broker) -> list[bytes]:
    backend = next(m for m in broker.middleware if isinstance(m, Abortable)).backend
    return list(broker.client.scan_iter(match=backend.namespace + "*"))


def test_running_job_is_interrupted_promptly(redis_broker, redis_worker, tenants):
    owner = tenants.acme.members[0]
    job_id = service.send_job("test_job", user_id=owner, args={"delay_ms": 30_000})
    wait_for(lambda: job_row(job_id)["status"] == "active", what="the job to start")

    assert service.cancel_job(job_id, owner).interrupting
    wait_for(lambda: events(job_id)[-1][0] == "execution_stopped", what="the running job to stop", timeout=5)
    assert [e[0] for e in events(job_id)].count("started") == 1
    assert job_row(job_id)["status"] == "cancelled"


def test_cancel_request_older_than_the_abort_expiry_still_stops_the_job(redis_broker, tenants):
    """No worker runs while the job waits; every abort key is gone (as after its TTL) when one
    starts: the job still never runs, because the request is in PostgreSQL."""
    owner = tenants.globex.members[1]
    queued = service.send_job("test_job", user_id=owner)
    delayed = service.send_job("test_job", user_id=owner, delay_ms=200)
    service.cancel_job(queued, owner)
    service.cancel_job(delayed, tenants.globex.admin)
    for key in abort_keys(redis_broker):
        redis_broker.client.delete(key)

    with running(redis_broker, threads=2):
        wait_for(
            lambda: [events(j)[-1][0] for j in (queued, delayed)] == ["delivery_skipped"] * 2,
            what="both deliveries to be skipped",
        )
    assert statuses([queued, delayed]) == {queued: "cancelled", delayed: "cancelled"}
    assert "started" not in [e[0] for j in (queued, delayed) for e in events(j)]


def test_cancel_racing_completion_ends_in_one_terminal_state_each_time(redis_broker, redis_worker, tenants):
    """Each job gets a cancel request at a random moment of its short life: before it starts,
    while it runs, or just after it ends. Which way each race goes depends on the machine's
    speed; what must hold every time does not (the two orders at the commit are made certain in
    the tests below)."""
    owner = tenants.acme.members[1]
    rng = random.Random(7)
    requests: queue.Queue = queue.Queue()
    refused: set[str] = set()

    def cancel_each() -> None:
        while (item := requests.get()) is not None:
            job_id, due = item
            threading.Event().wait(max(0.0, due - time.monotonic()))  # the stimulus's moment
            try:
                service.cancel_job(job_id, owner)
            except JobAlreadyFinished:
                refused.add(job_id)
        database.close()

    canceller = threading.Thread(target=cancel_each)
    canceller.start()
    job_ids = []
    for _ in range(60):
        # Lives of 0 to 60 ms, cancels 0 to 40 ms after the send: on a loaded machine too, some
        # jobs end before their cancel and some are still running or waiting when it comes.
        job_ids.append(service.send_job("test_job", user_id=owner, args={"delay_ms": rng.randrange(0, 60)}))
        requests.put((job_ids[-1], time.monotonic() + rng.random() / 25))
    requests.put(None)
    canceller.join(timeout=60)
    assert not canceller.is_alive()
    wait_for(all_terminal(job_ids), what="every raced job to finish", timeout=30)

    final = statuses(job_ids)
    completed = {j for j, s in final.items() if s == "completed"}
    cancelled = {j for j, s in final.items() if s == "cancelled"}
    assert completed | cancelled == set(job_ids)
    assert completed == refused, "a completed job is exactly one whose cancel was refused"
    both = database.execute_sql(
        "SELECT count(*) FROM job_status WHERE completed_at IS NOT NULL AND cancelled_at IS NOT NULL"
    ).fetchone()[0]
    assert both == 0
    for job_id in completed:
        assert events(job_id)[-1][0] == "cancel_refused"

    def after_cancel(job_id: str) -> list[str]:
        names = [e[0] for e in events(job_id)]
        return names[names.index("cancelled") + 1 :]

    # Cancelled before it started (its delivery is skipped), or while it ran (its end is refused,
    # or the abort stops it): the worker's side comes after the row is final.
    wait_for(lambda: all(after_cancel(j) for j in cancelled), what="the workers' side of each cancel")
    for job_id in cancelled:
        assert after_cancel(job_id) in (["delivery_skipped"], ["transition_rejected"], ["execution_stopped"])
    assert out_of_order_events() == []
    assert broken_rows() == []


@pytest.fixture
def gated(redis_broker, tenants):
    """A job that runs until its gate opens: the test decides when it ends."""
    gate = threading.Event()
    actor = dramatiq.actor(lambda: gate.wait(30), broker=redis_broker, actor_name="gated", max_retries=0)
    job_id = actor.send_with_options(job_owner={"user_id": tenants.acme.members[0]}).message_id
    wait_for(lambda: job_row(job_id)["status"] == "active", what="the gated job to start")
    return job_id, gate


def cancel_in_thread(job_id: str, owner: str) -> tuple[threading.Thread, list]:
    answer: list = []

    def cancel() -> None:
        try:
            answer.append(service.cancel_job(job_id, owner))
        except JobAlreadyFinished as error:
            answer.append(error)
        finally:
            database.close()

    thread = threading.Thread(target=cancel)
    thread.start()
    return thread, answer


def test_completion_committed_before_the_cancel_wins(redis_worker, gated, held_row, tenants):
    job_id, gate = gated
    held_row(job_id)  # both writes queue behind this lock, in the order they arrive
    gate.set()
    wait_for(waiting_on_locks(1, "job_finish"), what="the completion to wait for the row")
    canceller, answer = cancel_in_thread(job_id, tenants.acme.members[0])
    wait_for(waiting_on_locks(1, "job_cancel_request"), what="the cancel to wait behind the completion")
    held_row.release()
    canceller.join(timeout=30)

    assert isinstance(answer[0], JobAlreadyFinished)
    assert job_row(job_id)["status"] == "completed"
    assert [e[0] for e in events(job_id)] == ["enqueued", "started", "completed", "cancel_refused"]


def test_cancel_committed_before_the_completion_wins(redis_worker, gated, held_row, tenants):
    job_id, gate = gated
    held_row(job_id)
    canceller, answer = cancel_in_thread(job_id, tenants.acme.members[0])
    wait_for(waiting_on_locks(1, "job_cancel_request"), what="the cancel to wait for the row")
    # The abort that follows the cancel may stop the job; ending it now makes its write queue.
    gate.set()
    wait_for(waiting_on_locks(1, "job_finish"), what="the completion to wait behind the cancel")
    held_row.release()
    canceller.join(timeout=30)

    assert answer[0].outcome == "cancelled"
    wait_for(lambda: len(events(job_id)) == 4, what="the refused completion to be recorded")
    assert job_row(job_id)["status"] == "cancelled"
    assert [e[0] for e in events(job_id)] == ["enqueued", "started", "cancelled", "transition_rejected"]
