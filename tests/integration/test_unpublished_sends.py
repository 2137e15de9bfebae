"""Sends whose rows are committed and whose publish fails: said so, with the ids, and sent later."""

from __future__ import annotations

import dataclasses

import pytest

import actors
from actors.broker import build_broker
from jobs import service
from jobs.errors import JobNotPublished
from middleware.reconcile import reconcile
from tests.conftest import running
from tests.helpers import all_terminal, count, events, statuses, wait_for

CLOSED_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
def redis_down(settings, redis_broker):
    """Every job type sends to a Redis that is not there; the test's working broker is given back after."""
    down = build_broker(dataclasses.replace(settings, redis_url=CLOSED_REDIS))
    actors.use_broker(down)
    yield down
    actors.use_broker(redis_broker)


def test_a_send_that_reaches_the_database_but_not_redis_says_so_and_is_sent_later(redis_down, redis_broker, tenants):
    user = tenants.acme.members[0]
    with pytest.raises(JobNotPublished, match="is recorded but the broker is unreachable") as raised:
        service.send_job("test_job", user_id=user, key="the-order")
    (job_id,) = raised.value.job_ids
    assert raised.value.job_id == job_id and statuses([job_id]) == {job_id: "pending"}

    # The user sends again with the same key: the same job, nothing new, even with Redis down.
    assert service.send_job("test_job", user_id=user, key="the-order") == job_id
    assert count("job_status") == 1

    actors.use_broker(redis_broker)
    assert [job.job_id for job in reconcile(redis_broker, grace_s=0)] == [job_id]
    with running(redis_broker, threads=2):
        wait_for(all_terminal([job_id]), what="the recorded job to run once Redis is back")
    assert [e[0] for e in events(job_id)] == ["enqueued", "started", "completed"]


def test_a_batch_that_reaches_the_database_but_not_redis_carries_every_id(redis_down, tenants):
    with pytest.raises(JobNotPublished, match="3 jobs .* are recorded") as raised:
        service.send_jobs("test_job", [{}, {}, {}], user_id=tenants.globex.admin)
    assert set(statuses(raised.value.job_ids).values()) == {"pending"} and len(raised.value.job_ids) == 3


def test_the_retry_of_a_job_sent_with_a_delay_is_not_sent_twice_by_reconcile(redis_broker, tenants):
    owner = tenants.globex.members[0]
    job_id = service.send_job("test_job", user_id=owner, delay_ms=60_000)
    service.cancel_job(job_id, owner)
    retried = service.retry_job(job_id, owner)

    assert reconcile(redis_broker, grace_s=0) == [], "the retry's message is where its row says"
    with running(redis_broker, threads=2):
        wait_for(all_terminal([retried.job_id]), what="the retry to run")
    assert [e[0] for e in events(retried.job_id)] == ["enqueued", "started", "completed"]


def test_cancelling_a_running_job_with_redis_down_cancels_it_and_says_so(redis_down, tenants):
    from db import transitions
    from tests.helpers import alive

    owner = tenants.acme.members[0]
    with pytest.raises(JobNotPublished) as raised:
        service.send_job("test_job", user_id=owner)
    job_id = raised.value.job_id
    alive("host:1:boot/1")
    assert transitions.mark_active(job_id, "host:1:boot/1").applied

    result = service.cancel_job(job_id, owner)
    assert (result.outcome, result.interrupting) == ("cancelled", False)
    assert "Connection refused" in result.abort_error
    assert statuses([job_id]) == {job_id: "cancelled"}
