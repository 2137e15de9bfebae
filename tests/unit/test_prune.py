"""Retention: what is pruned and what is kept (each status, each age, the boundaries), a dry run
changes nothing, the counters never go down, and the workers' role deletes nothing directly."""

from __future__ import annotations

import psycopg2
import psycopg2.errors
import pytest

from db import metrics, prune
from db.retention import DAY_MS
from tests.helpers import as_admin, insert_job
from tests.support.cli import jobctl
from tests.support.scrape import scrape

DAY_S = DAY_MS / 1000
FINISHED = ("completed", "failed", "cancelled")


def present(job_ids: list[str]) -> set[str]:
    rows = as_admin("SELECT job_id::text FROM job_status WHERE job_id = ANY(%s::uuid[])", (job_ids,))
    return {job_id for (job_id,) in rows}


def events_of(job_ids: list[str]) -> int:
    return as_admin("SELECT count(*) FROM job_events WHERE job_id = ANY(%s::uuid[])", (job_ids,))[0][0]


def set_retention(**days: float) -> None:
    as_admin(
        "UPDATE job_retention SET completed_ms = coalesce(%s, completed_ms), failed_ms = coalesce(%s, failed_ms),"
        " cancelled_ms = coalesce(%s, cancelled_ms)",
        tuple(None if days.get(s) is None else round(days[s] * DAY_MS) for s in FINISHED),
    )


@pytest.fixture
def make(tenants):
    def job(status: str, age_days: float) -> str:
        return insert_job(tenants.acme.id, tenants.acme.members[0], status, age_s=age_days * DAY_S)

    return job


def test_the_retention_of_each_outcome_decides_what_goes(make, settings):
    # The configuration's: completed 30 days, failed and cancelled 90.
    young = {s: make(s, 29.9) for s in FINISHED}
    between = {s: make(s, 30.1) for s in FINISHED}
    old = {s: make(s, 90.1) for s in FINISHED}
    done = prune.prune(settings.admin_database_url, settings.db_limits())
    assert present(list(young.values())) == set(young.values())
    assert present(list(between.values())) == {between["failed"], between["cancelled"]}
    assert present(list(old.values())) == set()
    assert done.jobs == {"completed": 2, "failed": 1, "cancelled": 1}
    assert done.events == {"completed": 6, "failed": 3, "cancelled": 3}
    assert events_of([*old.values(), between["completed"]]) == 0


def test_an_age_given_prunes_at_its_boundary_and_only_the_statuses_named(make, settings):
    just_under = [make(s, 1 - 60 / DAY_S) for s in FINISHED]  # a minute younger than a day
    just_over = {s: make(s, 1 + 60 / DAY_S) for s in FINISHED}
    done = prune.prune(settings.admin_database_url, settings.db_limits(), statuses=["failed"], older_than_ms=DAY_MS)
    assert done.jobs == {"completed": 0, "failed": 1, "cancelled": 0}
    assert present(just_under) == set(just_under)
    assert present(list(just_over.values())) == {just_over["completed"], just_over["cancelled"]}


def test_no_waiting_or_running_job_is_ever_pruned(make, settings):
    unfinished = [make(s, 400) for s in ("pending", "active", "retrying")]
    finished = make("completed", 400)
    prune.prune(settings.admin_database_url, settings.db_limits(), older_than_ms=1)
    assert present([*unfinished, finished]) == set(unfinished)
    assert events_of(unfinished) == 1 + 2 + 3


def test_zero_keeps_an_outcome_for_ever(make, settings):
    set_retention(cancelled=0)
    kept = make("cancelled", 10_000)
    gone = make("failed", 10_000)
    assert prune.prune_expired(100) == 1
    assert present([kept, gone]) == {kept}


def test_a_dry_run_counts_and_changes_nothing(make, settings):
    jobs = [make(s, 100) for s in FINISHED] + [make("completed", 1)]
    before = as_admin("SELECT count(*) FROM job_events")[0][0]
    done = prune.prune(settings.admin_database_url, settings.db_limits(), dry_run=True)
    assert done.jobs == {"completed": 1, "failed": 1, "cancelled": 1}
    assert done.events == {"completed": 3, "failed": 3, "cancelled": 3}
    assert present(jobs) == set(jobs)
    assert as_admin("SELECT count(*) FROM job_events")[0][0] == before
    assert scrape(settings)("jobs_pruned_total", job_type="test_job", outcome="completed") == 0


def test_batches_go_one_transaction_each_until_none_is_left(make, settings):
    jobs = [make("completed", 40) for _ in range(5)]
    done = prune.prune(settings.admin_database_url, settings.db_limits(), batch=2)
    assert (done.total_jobs, done.batches) == (5, 3)
    assert present(jobs) == set()


def test_counters_never_go_down_when_their_events_go(make, settings):
    jobs = [make("completed", 40) for _ in range(3)] + [make("failed", 100)]
    before = scrape(settings)
    assert before("jobs_finished_total", job_type="test_job", outcome="completed") == 3
    # Events committed and not yet counted are counted before they go.
    extra = make("completed", 40)
    prune.prune(settings.admin_database_url, settings.db_limits())
    metrics.count_events(wait=True)
    after = scrape(settings)
    assert present([*jobs, extra]) == set()
    assert after("jobs_finished_total", job_type="test_job", outcome="completed") == 4
    assert after("jobs_finished_total", job_type="test_job", outcome="failed") == 1
    assert after("jobs_pruned_total", job_type="test_job", outcome="completed") == 4
    assert after("jobs_pruned_total", job_type="test_job", outcome="failed") == 1


def test_the_workers_role_deletes_nothing_directly(make, settings):
    job = make("completed", 400)
    conn = psycopg2.connect(settings.worker_database_url)
    conn.autocommit = True
    try:
        for statement in (
            "DELETE FROM job_events WHERE job_id = %s",
            "DELETE FROM job_status WHERE job_id = %s",
            "SELECT * FROM job_prune(NULL, 1, 10, false) WHERE %s IS NOT NULL",
        ):
            with pytest.raises(psycopg2.errors.InsufficientPrivilege), conn.cursor() as cursor:
                cursor.execute(statement, (job,))
        assert present([job]) == {job}
        # What it may do: prune by the retention the database holds, which it can't choose.
        set_retention(completed=500)
        with conn.cursor() as cursor:
            cursor.execute("SELECT job_prune_expired(100)")
            assert cursor.fetchone() == (0,)
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cursor.execute("UPDATE job_retention SET completed_ms = 1")
        assert present([job]) == {job}
    finally:
        conn.close()


def test_events_go_only_through_job_prune(make, admin_db):
    job = make("completed", 400)
    with admin_db.cursor() as cursor:
        with pytest.raises(psycopg2.errors.CheckViolation, match="append-only"):
            cursor.execute("DELETE FROM job_events WHERE job_id = %s", (job,))
        # A function of another name that deletes is refused just the same.
        cursor.execute(
            "CREATE FUNCTION pg_temp.job_prune_too(p uuid) RETURNS void LANGUAGE sql AS"
            " 'DELETE FROM job_events WHERE job_id = p'"
        )
        with pytest.raises(psycopg2.errors.CheckViolation, match="append-only"):
            cursor.execute("SELECT pg_temp.job_prune_too(%s)", (job,))
    assert events_of([job]) == 3


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--status", "pending"], "--status takes finished outcomes"),
        (["--status", "completed,active"], "--status takes finished outcomes"),
        (["--older-than", "0d"], "--older-than takes an age above 0"),
        (["--older-than", "30 days"], "--older-than takes an age above 0"),
        (["--batch", "0"], "--batch must be from 1 to 10000"),
    ],
)
def test_bad_input_is_one_line_and_prunes_nothing(make, arguments, message):
    job = make("completed", 400)
    result = jobctl("prune", *arguments)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert present([job]) == {job}


def test_jobctl_prune_says_what_it_deleted(make):
    jobs = [make("failed", 3), make("failed", 1)]
    dry = jobctl("prune", "--older-than", "2d", "--status", "failed", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == ["failed    would delete 1 jobs, 3 events"]
    done = jobctl("prune", "--older-than", "2d", "--status", "failed")
    assert done.stdout.splitlines() == ["failed    deleted 1 jobs, 3 events"]
    assert present(jobs) == {jobs[1]}
