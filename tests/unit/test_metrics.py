"""/metrics with StubBroker: each series moves as jobs are sent, run, fail, retried and cancelled;
the counters come from the events (counted once, whoever counts), and no series names a user."""

from __future__ import annotations

import re

from db import metrics
from jobs import service
from jobs.errors import JobAlreadyFinished, PermissionDenied
from jobs.metrics import DURATION_BOUNDS, _bound_label
from middleware import ProgressMiddleware
from middleware.identity import process_id
from middleware.report import send_report
from tests.conftest import running
from tests.helpers import as_admin, job_row, wait_for
from tests.support.scrape import scrape

T = "test_job"


def finish(broker, worker) -> None:
    broker.join("default", fail_fast=False)
    worker.join()


def test_jobs_sent_and_waiting_are_counted_before_any_worker_runs(stub_broker, tenants, settings):
    before = scrape(settings)
    assert before("jobs_sent_total", job_type=T) == 0
    assert before("jobs_waiting", job_type=T, queue="default", status="pending") == 0
    assert before("jobs_oldest_waiting_seconds", queue="default") == 0

    service.send_job(T, user_id=tenants.acme.members[0])
    service.send_job(T, user_id=tenants.globex.members[0])
    later = service.send_job(T, user_id=tenants.acme.members[0], delay_ms=600_000)
    now = scrape(settings)
    assert now("jobs_sent_total", job_type=T) == 3
    assert now("jobs_waiting", job_type=T, queue="default", status="pending") == 3
    assert now("jobs_running", job_type=T, queue="default") == 0
    # Two are due and have waited a little; the delayed one is not due for ten minutes.
    assert 0 < now("jobs_oldest_waiting_seconds", queue="default") < 60
    assert job_row(later)["scheduled_for"] is not None


def test_each_series_moves_as_jobs_run_fail_retry_and_are_cancelled(stub_broker, tenants, settings):
    alice, bob = tenants.acme.members
    with running(stub_broker, threads=4) as worker:
        done = [service.send_job(T, user_id=alice) for _ in range(2)]
        failed = service.send_job(T, user_id=alice, args={"should_fail": True})
        flaky = service.send_job(T, user_id=bob, args={"fail_attempts": 1})
        finish(stub_broker, worker)
        assert [job_row(j)["status"] for j in [*done, failed, flaky]] == ["completed"] * 2 + ["failed", "completed"]
        after_runs = scrape(settings)
        assert after_runs("jobs_finished_total", job_type=T, outcome="completed") == 3
        assert after_runs("jobs_finished_total", job_type=T, outcome="failed") == 1
        assert after_runs("jobs_retries_total", job_type=T, cause="error") == 1
        # Four first starts waited; five attempts ran (the flaky job's two).
        assert after_runs("jobs_wait_seconds_count", job_type=T) == 4
        assert after_runs("jobs_run_seconds_count", job_type=T) == 5
        assert after_runs("jobs_run_seconds_bucket", job_type=T, le="+Inf") == 5
        assert after_runs("jobs_run_seconds_sum", job_type=T) > 0

        # A running job, cancelled by its owner; a refused cancel of each kind.
        long = service.send_job(T, user_id=alice, args={"delay_ms": 30_000})
        wait_for(lambda: job_row(long)["status"] == "active", what="the long job to start")
        assert scrape(settings)("jobs_running", job_type=T, queue="default") == 1
        assert service.cancel_job(long, alice).outcome == "cancelled"
        try:
            service.cancel_job(done[0], alice)
        except JobAlreadyFinished:
            pass
        try:
            service.cancel_job(flaky, alice)  # bob's job: alice is a member, not an admin
        except PermissionDenied:
            pass
        finish(stub_broker, worker)
    cancelled = scrape(settings)
    assert cancelled("jobs_running", job_type=T, queue="default") == 0
    assert cancelled("jobs_finished_total", job_type=T, outcome="cancelled") == 1
    assert cancelled("jobs_cancel_requests_total", job_type=T, outcome="cancelled") == 1
    assert cancelled("jobs_cancel_requests_total", job_type=T, outcome="refused_finished") == 1
    assert cancelled("jobs_cancel_requests_total", job_type=T, outcome="refused_forbidden") == 1
    assert cancelled("jobs_run_seconds_count", job_type=T) == 6
    assert cancelled("jobs_sent_total", job_type=T) == 5


def test_counters_are_counted_once_whoever_counts_and_however_often(stub_broker, stub_worker, tenants, settings):
    for _ in range(3):
        service.send_job(T, user_id=tenants.acme.members[0])
    finish(stub_broker, stub_worker)
    first = scrape(settings)
    # Other servers and workers count too, and again: nothing is counted twice.
    for _ in range(3):
        metrics.count_events(wait=True)
    second = scrape(settings)
    for name in ("jobs_sent_total", "jobs_finished_total", "jobs_run_seconds_count", "jobs_wait_seconds_sum"):
        assert first.of(name) == second.of(name), name
    assert second("jobs_finished_total", job_type=T, outcome="completed") == 3


def test_a_backlog_is_counted_page_by_page(stub_broker, tenants, settings, monkeypatch):
    monkeypatch.setattr(metrics, "PAGE", 3)
    for _ in range(5):
        service.send_job(T, user_id=tenants.acme.members[0])
    assert metrics.count_events(wait=True) == 3
    assert metrics.count_events(wait=True) == 2
    assert metrics.count_events(wait=True) == 0
    service.send_job(T, user_id=tenants.acme.members[0])
    assert metrics.count_events(wait=True, pages=10) == 1
    assert scrape(settings)("jobs_sent_total", job_type=T) == 6


def test_histogram_buckets_are_the_bounds_the_database_counts_in(stub_broker, stub_worker, tenants, settings):
    service.send_job(T, user_id=tenants.acme.members[0], args={"delay_ms": 20})
    finish(stub_broker, stub_worker)
    metrics.count_events(wait=True)
    stored = {label for (label,) in as_admin("SELECT DISTINCT label FROM job_metrics WHERE name LIKE '%%_bucket'")}
    assert stored and stored <= {_bound_label(b) for b in DURATION_BOUNDS} | {"+Inf"}
    shown = scrape(settings).of("jobs_run_seconds_bucket")
    bounds = [float(dict(labels)["le"]) for labels in shown]
    assert sorted(set(bounds)) == [*DURATION_BOUNDS, float("inf")]
    # The 20 ms job ran in the bucket up to 0.05 s or a later one, never before 0.01 s.
    assert scrape(settings)("jobs_run_seconds_bucket", job_type=T, le="0.01") == 0
    assert scrape(settings)("jobs_run_seconds_bucket", job_type=T, le="+Inf") == 1


def test_the_workers_own_numbers_are_shown_for_the_live_workers(stub_broker, stub_worker, tenants, settings):
    for _ in range(4):
        service.send_job(T, user_id=tenants.acme.members[0], args={"delay_ms": 30})
    finish(stub_broker, stub_worker)
    writer = next(m.writer for m in stub_broker.middleware if isinstance(m, ProgressMiddleware))
    assert writer.flush(timeout=10), "the progress writer did not flush"
    assert send_report(stub_broker)
    shown = scrape(settings)
    me = process_id()
    assert shown("jobs_status_write_seconds_count", worker=me, write="start") >= 4
    assert shown("jobs_status_write_seconds_count", worker=me, write="end") >= 4
    assert shown("jobs_group_commit_batch_size_count", worker=me) >= 1
    assert shown("jobs_progress_queue", worker=me) == 0
    assert shown("jobs_progress_dropped_total", worker=me) == 0
    assert shown("jobs_workers_alive") == 1
    assert 0 <= shown("jobs_worker_heartbeat_age_seconds", worker=me, host=me.split(":")[0]) < 60
    # A report the exporter can't read leaves that series out, and nothing else.
    as_admin("UPDATE worker_reports SET report = jsonb_set(report, '{progress_queue}', '\"many\"')")
    garbled = scrape(settings)
    assert not garbled.has("jobs_progress_queue", worker=me)
    assert garbled.has("jobs_status_write_seconds_count", worker=me, write="end")


ALLOWED_LABELS = {"job_type", "queue", "status", "outcome", "cause", "state", "worker", "host", "write", "le"}


def test_no_series_names_a_user_or_an_organization(stub_broker, stub_worker, tenants, settings):
    for org in (tenants.acme, tenants.globex):
        for user in (org.admin, *org.members):
            service.send_job(T, user_id=user)
        service.send_job("initialize", user_id=org.admin, args={"course_id": org.course})
    finish(stub_broker, stub_worker)
    send_report(stub_broker)
    shown = scrape(settings)
    identities = {tenants.acme.id, tenants.globex.id}
    for org in (tenants.acme, tenants.globex):
        identities |= {org.admin, *org.members, org.course}
    identities |= {email for (email,) in as_admin("SELECT email FROM users")}
    for (name, labels), _ in shown.samples.items():
        assert dict(labels).keys() <= ALLOWED_LABELS, (name, labels)
        for value in dict(labels).values():
            assert value not in identities, (name, labels)
            assert not re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", value), (
                name,
                labels,
            )
    assert shown("jobs_finished_total", job_type="initialize", outcome="completed") == 2
