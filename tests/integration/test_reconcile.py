"""Broker loss: waiting jobs whose messages Redis lost are published again, nothing else is."""

from __future__ import annotations

import pytest

from jobs import service
from middleware.reconcile import CannotReconcile, broker_job_ids, reconcile
from tests.conftest import running
from tests.helpers import all_terminal, events, statuses, wait_for


def test_queues_flushed_while_jobs_wait_then_reconcile_completes_them_all(redis_broker, tenants):
    user = tenants.globex.members[0]
    with running(redis_broker, threads=4):
        done = [service.send_job("test_job", user_id=user) for _ in range(5)]
        wait_for(all_terminal(done), what="the first jobs to finish")

    waiting = [service.send_job("test_job", user_id=user) for _ in range(20)]
    waiting += [service.send_job("test_job", user_id=user, delay_ms=300) for _ in range(5)]
    waiting.append(service.send_job("initialize", user_id=user, args={"course_id": tenants.globex.course}))
    assert broker_job_ids(redis_broker, {"default"}) == set(waiting)
    redis_broker.flush_all()  # Redis restarted without persistence
    assert broker_job_ids(redis_broker, {"default"}) == set()

    sent = reconcile(redis_broker, grace_s=0)
    assert sorted(job.job_id for job in sent) == sorted(waiting), "every waiting job, and only those"
    assert reconcile(redis_broker, grace_s=0) == [], "nothing twice while the copies wait"

    with running(redis_broker, threads=4):
        wait_for(all_terminal(waiting), what="the republished jobs to finish")
    assert set(statuses(waiting).values()) == {"completed"}
    assert all([e[0] for e in events(job_id)].count("started") == 1 for job_id in waiting + done)


def test_recent_sends_are_left_alone(redis_broker, tenants):
    service.send_job("test_job", user_id=tenants.acme.admin)
    redis_broker.flush_all()
    assert reconcile(redis_broker, grace_s=60) == []


def test_reconcile_needs_redis(stub_broker):
    with pytest.raises(CannotReconcile, match="needs a RedisBroker, not StubBroker"):
        reconcile(stub_broker, grace_s=0)
