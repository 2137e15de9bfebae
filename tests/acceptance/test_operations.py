"""Operations with real worker processes: the worker series as a worker is killed, each process's
own numbers, and retention running beside live workers without losing what should stay."""

from __future__ import annotations

import os
import signal
import threading

from db.retention import DAY_MS
from jobs import service
from middleware.reaper import recover_lost_jobs
from tests.acceptance.conftest import WINDOW_S, holder_pid
from tests.helpers import all_terminal, as_admin, events, insert_jobs, job_row, overlapping_executions, wait_for
from tests.support.cli import jobctl
from tests.support.scrape import scrape

T = "test_job"


def test_killing_a_worker_moves_the_worker_series(workers, tenants, settings, redis_broker):
    workers()
    job_id = service.send_job(T, user_id=tenants.acme.members[0], args={"delay_ms": 30_000})
    wait_for(lambda: job_row(job_id)["status"] == "active", what="the job to start", timeout=30)
    victim = job_row(job_id)["worker_process"]
    host = victim.split(":")[0]
    alive = scrape(settings)
    assert alive("jobs_workers_alive") == 1
    assert alive("jobs_workers_lost") == 0
    assert alive("jobs_running", job_type=T, queue="default") == 1
    assert alive("jobs_worker_heartbeat_age_seconds", worker=victim, host=host) < WINDOW_S

    os.kill(holder_pid(job_id), signal.SIGKILL)
    lost = wait_for(
        lambda: (s := scrape(settings))("jobs_workers_lost") == 1 and s,
        what="the killed worker's lease to run out",
        timeout=30,
    )
    assert lost("jobs_workers_alive") == 0
    assert lost("jobs_worker_heartbeat_age_seconds", worker=victim, host=host) > WINDOW_S / 2
    # No worker is left to reap: as `jobctl reap` would.
    wait_for(lambda: recover_lost_jobs(redis_broker, window_s=WINDOW_S), what="the job to be reaped", timeout=10)
    reaped = scrape(settings)
    assert reaped("jobs_worker_lost_total", job_type=T, outcome="retrying") == 1
    assert reaped("jobs_retries_total", job_type=T, cause="worker_lost") == 1
    assert reaped("jobs_running", job_type=T, queue="default") == 0
    assert reaped("jobs_waiting", job_type=T, queue="default", status="retrying") == 1
    # The killed attempt ran from its start to the reaper's pass.
    assert reaped("jobs_run_seconds_count", job_type=T) == 1
    assert reaped("jobs_run_seconds_sum", job_type=T) > WINDOW_S / 2


def test_a_worker_process_reports_its_own_numbers(workers, tenants, settings):
    workers(threads=4)
    jobs = [service.send_job(T, user_id=tenants.acme.members[0], args={"delay_ms": 50}) for _ in range(6)]
    wait_for(all_terminal(jobs), what="the jobs to end", timeout=30)
    process = job_row(jobs[0])["worker_process"]
    shown = wait_for(
        lambda: (
            (s := scrape(settings)).has("jobs_status_write_seconds_count", worker=process, write="end")
            and s("jobs_status_write_seconds_count", worker=process, write="end") >= 6
            and s
        ),
        what="the worker's report of its six ends",
        timeout=30,
    )
    assert shown("jobs_status_write_seconds_count", worker=process, write="start") >= 6
    assert shown("jobs_group_commit_batch_size_count", worker=process) >= 1
    assert shown("jobs_group_commit_batch_size_bucket", worker=process, le="+Inf") >= 1
    assert shown("jobs_progress_dropped_total", worker=process) == 0
    assert shown("jobs_reconcile_resends_total", worker=process) == 0


def test_retention_beside_live_workers_loses_nothing_that_should_stay(workers, tenants, settings):
    member = tenants.acme.members[0]
    old_done = insert_jobs(tenants.acme.id, member, "completed", age_s=40 * DAY_MS / 1000, count=300)
    old_failed = insert_jobs(tenants.acme.id, member, "failed", age_s=100 * DAY_MS / 1000, count=50)
    # Kept: failed jobs within their 90 days, and a job that has waited for a year.
    kept = insert_jobs(tenants.acme.id, member, "failed", age_s=40 * DAY_MS / 1000, count=20)
    kept += insert_jobs(tenants.acme.id, member, "pending", age_s=365 * DAY_MS / 1000)
    # Two workers prune every 0.2 s in batches of 25, while they run jobs; jobctl prunes too.
    pruning = {"JOBS_PRUNE_S": "0.2", "JOBS_PRUNE_BATCH": "25"}
    workers(threads=4, env=pruning)
    workers(threads=4, env=pruning)
    new = []
    sender = threading.Thread(
        target=lambda: new.extend(
            service.send_job(T, user_id=member, args={"delay_ms": n % 20, "fail_attempts": 1 if n % 7 == 0 else 0})
            for n in range(120)
        )
    )
    sender.start()
    pruned_by_hand = jobctl("prune", "--older-than", "30d", "--status", "completed", "--batch", "10")
    sender.join()
    assert pruned_by_hand.returncode == 0, pruned_by_hand.stderr
    wait_for(all_terminal(new), what="the new jobs to end", timeout=60)

    def left(ids: list[str]) -> int:
        return as_admin("SELECT count(*) FROM job_status WHERE job_id = ANY(%s::uuid[])", (ids,))[0][0]

    wait_for(lambda: left(old_done + old_failed) == 0, what="the old finished jobs to be pruned", timeout=30)
    assert left(kept) == len(kept)
    assert left(new) == len(new)
    assert {job_row(j)["status"] for j in new} == {"completed"}
    for job_id in new[:20]:
        names = [e[0] for e in events(job_id)]
        assert names[0] == "enqueued" and names[-1] == "completed", names
    assert overlapping_executions() == []
    shown = scrape(settings)
    assert shown("jobs_pruned_total", job_type=T, outcome="completed") == 300
    assert shown("jobs_pruned_total", job_type=T, outcome="failed") == 50
    assert shown("jobs_finished_total", job_type=T, outcome="completed") == 300 + 120
