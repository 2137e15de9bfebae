"""Group commit: writes that wait together share one transaction; each caller still gets its own
answer once its write is committed, and one bad write fails only its own caller."""

from __future__ import annotations

import threading

import peewee
import psycopg2
import pytest

from db import transitions
from db.connection import database
from db.group_commit import GroupCommit
from jobs import service
from tests.helpers import alive, events, statuses, wait_for


@pytest.fixture
def jobs(tenants, stub_broker):
    alive("w")
    return service.send_jobs("test_job", [{}] * 4, user_id=tenants.acme.members[0])


@pytest.fixture
def held(settings):
    """Holds the row lock of a job in another transaction until released: the write of that job
    blocks the writer thread, and the writes sent meanwhile queue up behind it."""
    conn = psycopg2.connect(settings.admin_database_url)

    def hold(job_id: str) -> None:
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1 FROM job_status WHERE job_id = %s FOR UPDATE", (job_id,))

    hold.release = conn.commit
    yield hold
    conn.close()


def blocked_on_the_lock() -> bool:
    return (
        database.execute_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()[0]
        == 1
    )


def in_threads(calls) -> tuple[list[threading.Thread], dict[int, object]]:
    answers: dict[int, object] = {}

    def run(i, call):
        try:
            answers[i] = call()
        except Exception as error:  # noqa: BLE001 - the test looks at what each caller got
            answers[i] = error
        finally:
            database.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    return threads, answers


def test_writes_waiting_together_share_one_transaction(jobs, held):
    commits = GroupCommit()
    first, *others = jobs
    held(first)
    threads, answers = in_threads([lambda: transitions.mark_active(first, "w/0", via=commits)])
    wait_for(blocked_on_the_lock, what="the first write to wait for the held row")
    more, more_answers = in_threads(
        [lambda j=job_id, i=i: transitions.mark_active(j, f"w/{i + 1}", via=commits) for i, job_id in enumerate(others)]
    )
    wait_for(lambda: commits._queue.qsize() == len(others), what="the other writes to queue behind the first")
    held.release()
    for thread in threads + more:
        thread.join(timeout=10)

    commits.close()
    assert (commits.writes, commits.transactions) == (4, 2)
    assert all(answer.applied for answer in [*answers.values(), *more_answers.values()])
    assert statuses(jobs) == dict.fromkeys(jobs, "active")
    assert all([e[0] for e in events(job_id)] == ["enqueued", "started"] for job_id in jobs)


def test_a_bad_write_fails_only_its_own_caller(jobs, held):
    commits = GroupCommit()
    first, good, bad, other = jobs
    held(first)
    threads, _ = in_threads([lambda: transitions.mark_active(first, "w/0", via=commits)])
    wait_for(blocked_on_the_lock, what="the first write to wait for the held row")
    sql = "SELECT * FROM job_finish(%s::uuid, 1, %s, 'w', NULL, NULL, NULL, NULL, 0)"
    more, answers = in_threads(
        [
            lambda: transitions.mark_active(good, "w/1", via=commits),
            lambda: commits.fetchone(sql, (bad, "cancelled")),  # refused by the database
            lambda: transitions.mark_active(other, "w/2", via=commits),
        ]
    )
    wait_for(lambda: commits._queue.qsize() == 3, what="three writes to queue behind the first")
    held.release()
    for thread in threads + more:
        thread.join(timeout=10)

    commits.close()
    assert answers[0].applied and answers[2].applied
    assert isinstance(answers[1], peewee.DataError) and "can not move a job to cancelled" in str(answers[1])
    assert statuses(jobs) == {first: "active", good: "active", bad: "pending", other: "active"}


def test_closing_stops_the_writer_after_its_writes_and_a_later_write_starts_another(jobs):
    commits = GroupCommit()
    first, second, *_ = jobs
    assert transitions.mark_active(first, "w/0", via=commits).applied
    writer = commits._writer
    commits.close()
    assert writer is not None and not writer.is_alive()
    assert transitions.mark_active(second, "w/1", via=commits).applied
    assert commits._writer is not writer and commits._writer.is_alive()
    commits.close()
    assert statuses([first, second]) == {first: "active", second: "active"}
