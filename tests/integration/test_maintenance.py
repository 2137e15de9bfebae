"""The threads that keep a worker's lease and run its maintenance passes never die silently:
whatever a pass or a heartbeat hits, it is logged and the next one runs on time."""

from __future__ import annotations

import dataclasses

import peewee
import pytest

from actors.broker import build_broker
from db import transitions
from jobs import service
from middleware import Maintenance
from middleware.reconcile import broker_job_ids
from tests.conftest import installed, running
from tests.helpers import alive, expire_lease, job_row, wait_for
from tests.support.proxy import Proxy


def logged(records, event: str) -> list[dict]:
    return [r.msg for r in records if isinstance(r.msg, dict) and r.msg.get("event") == event]


@pytest.fixture
def maintained():
    """Starts a broker's Maintenance thread with quick passes; stops it after the test."""
    started = []

    def start(broker) -> Maintenance:
        maintenance = next(m for m in broker.middleware if isinstance(m, Maintenance))
        maintenance.reap_s, maintenance.reconcile_s = 0.05, 0.1
        maintenance.before_worker_boot(broker, None)
        started.append((maintenance, broker))
        return maintenance

    yield start
    for maintenance, broker in started:
        maintenance.after_worker_shutdown(broker, None)


def lost_job(broker, tenants, worker: str) -> str:
    """A job that was running on `worker` (which took its message), whose lease has just run out."""
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    broker.flush("default")
    alive(worker)
    assert transitions.mark_active(job_id, worker).applied
    expire_lease(worker)
    return job_id


def test_maintenance_goes_on_through_a_redis_outage(settings, tenants, maintained, log_records):
    """The passes fail while Redis refuses connections, and the next ones run; once it is back,
    the job reaped meanwhile is published again (by reconcile, whose window here is 0, or by the
    reaper: whichever pass comes first)."""
    with Proxy(("127.0.0.1", 6379)) as proxy:
        # A window of 0: reconcile publishes a waiting job at once (the test has no send in flight).
        cut_off = dataclasses.replace(settings, redis_url=proxy.url_for(settings.redis_url), recovery_window_s=0)
        with installed(build_broker(cut_off)) as broker:
            job_id = lost_job(broker, tenants, "ghost:1:redis/Thread-1")
            proxy.cut(refuse=True)
            maintenance = maintained(broker)
            # Reaped in PostgreSQL; publishing it again fails while Redis refuses connections.
            wait_for(lambda: job_row(job_id)["status"] == "retrying", what="the lost job to be reaped")
            wait_for(
                lambda: len(logged(log_records, "maintenance_failed")) >= 3,
                what="passes to fail, one after the other, while Redis is down",
            )
            assert maintenance._thread.is_alive()
            assert {f["what"] for f in logged(log_records, "maintenance_failed")} >= {"reap", "reconcile"}
            assert "ConnectionError" in logged(log_records, "maintenance_failed")[0]["error"]

            proxy.heal()
            wait_for(
                lambda: job_id in broker_job_ids(broker, {"default"}),
                what="the reaped job to be published again once Redis is back",
            )
            assert maintenance._thread.is_alive()


def test_a_pass_that_hits_a_bug_is_logged_and_the_next_one_runs(stub_broker, maintained, monkeypatch, log_records):
    from middleware import reaper

    calls: list[int] = []
    real = reaper.transitions.reap

    def buggy_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug in the reaper")
        return real(*args, **kwargs)

    monkeypatch.setattr(reaper.transitions, "reap", buggy_once)
    maintenance = maintained(stub_broker)
    wait_for(lambda: len(calls) >= 3, what="passes after the one that hit the bug")
    (failed,) = logged(log_records, "maintenance_failed")
    assert (failed["what"], failed["error"]) == ("reap", "RuntimeError: a bug in the reaper")
    assert maintenance._thread.is_alive()


def test_heartbeats_go_on_after_failures_and_the_worker_then_runs_its_jobs(
    stub_broker, tenants, monkeypatch, log_records
):
    from middleware import heartbeat

    failures: list[int] = []
    real = heartbeat.transitions.heartbeat

    def failing_twice(*args, **kwargs):
        if len(failures) < 2:
            failures.append(1)
            raise RuntimeError("a bug") if failures == [1] else peewee.InterfaceError("connection gone")
        return real(*args, **kwargs)

    monkeypatch.setattr(heartbeat.transitions, "heartbeat", failing_twice)
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    keeper = next(m for m in stub_broker.middleware if isinstance(m, heartbeat.LeaseKeeper))
    keeper.heartbeat_s = 0.05
    with running(stub_broker, threads=1) as worker:
        stub_broker.join("default")
        worker.join()
    assert job_row(job_id)["status"] == "completed"
    assert [f["error"] for f in logged(log_records, "heartbeat_failed")] == ["a bug", "connection gone"]
    assert logged(log_records, "lease_acquired"), "the third heartbeat gave the worker its lease"
