"""Group commit: writes that wait together share one transaction; each caller still gets its own
answer once its write is committed, and one bad write fails only its own caller."""

from __future__ import annotations

import threading

import peewee
import pytest

from db import transitions
from db.connection import database, is_transient
from db.group_commit import GroupCommit, LeaderInterrupted
from jobs import service
from tests.helpers import alive, events, job_row, statuses, wait_for, waiting_on_locks


@pytest.fixture
def jobs(tenants, stub_broker):
    alive("w")
    return service.send_jobs("test_job", [{}] * 4, user_id=tenants.acme.members[0])


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


def behind_a_held_row(held_row, commits: GroupCommit, first: str, first_write, writes, *, before_release=None):
    """Runs `first_write` (a write of job `first`, whose row is held) and, once it blocks the
    writer, `writes` from threads of their own, which then queue up behind it; releases the row
    once they all wait (and `before_release` has run); returns what each of `writes` got."""
    held_row(first)
    threads, _ = in_threads([first_write])
    wait_for(waiting_on_locks(1), what="the first write to wait for the held row")
    more, answers = in_threads(writes)
    wait_for(lambda: commits.queued() == len(writes), what="the other writes to queue behind the first")
    if before_release is not None:
        before_release()
    held_row.release()
    for thread in threads + more:
        thread.join(timeout=10)
    commits.close()
    return answers


def test_writes_waiting_together_share_one_transaction(jobs, held_row):
    commits = GroupCommit()
    first, *others = jobs
    answers = behind_a_held_row(
        held_row,
        commits,
        first,
        lambda: transitions.mark_active(first, "w/0", via=commits),
        [
            lambda j=job_id, i=i: transitions.mark_active(j, f"w/{i + 1}", via=commits)
            for i, job_id in enumerate(others)
        ],
    )

    assert (commits.writes, commits.transactions) == (4, 2)
    assert all(answer.applied for answer in answers.values())
    assert statuses(jobs) == dict.fromkeys(jobs, "active")
    assert all([e[0] for e in events(job_id)] == ["enqueued", "started"] for job_id in jobs)


REFUSED_BY_THE_DATABASE = ("SELECT * FROM job_finish(%s::uuid, 1, 'cancelled', 'w', NULL, NULL, NULL, NULL, 0)", ())
# psycopg2 refuses a string holding a NUL before it sends anything (ValueError).
REFUSED_BY_THE_DRIVER = ("SELECT * FROM job_start(%s::uuid, %s)", ("w/\x00",))


@pytest.mark.parametrize(
    ("bad_write", "error", "message"),
    [
        (REFUSED_BY_THE_DATABASE, peewee.DataError, "can not move a job to cancelled"),
        (REFUSED_BY_THE_DRIVER, ValueError, "NUL"),
    ],
    ids=["database", "driver"],
)
def test_a_bad_write_fails_only_its_own_caller(jobs, held_row, bad_write, error, message):
    commits = GroupCommit()
    first, good, bad, other = jobs
    sql, extra = bad_write
    answers = behind_a_held_row(
        held_row,
        commits,
        first,
        lambda: transitions.mark_active(first, "w/0", via=commits),
        [
            lambda: transitions.mark_active(good, "w/1", via=commits),
            lambda: commits.fetchone(sql, (bad, *extra)),
            lambda: transitions.mark_active(other, "w/2", via=commits),
        ],
    )

    assert answers[0].applied and answers[2].applied
    assert isinstance(answers[1], error) and message in str(answers[1])
    assert statuses(jobs) == {first: "active", good: "active", bad: "pending", other: "active"}


def test_a_lone_write_runs_on_its_own_thread_and_closing_ends_its_connection(jobs):
    commits = GroupCommit()
    first, second, *_ = jobs
    threads = set(threading.enumerate())
    assert transitions.mark_active(first, "w/0", via=commits).applied
    assert set(threading.enumerate()) == threads, "no writer thread: the caller ran its own write"
    backend = commits._connection().get_backend_pid()
    commits.close()
    assert transitions.mark_active(second, "w/1", via=commits).applied
    assert commits._connection().get_backend_pid() != backend, "a write after close opens another connection"
    commits.close()
    assert statuses([first, second]) == {first: "active", second: "active"}
    assert (commits.writes, commits.transactions) == (2, 2)


def test_the_batches_do_not_run_inside_a_transaction_the_caller_left_open(jobs):
    # A job's code that leaves a transaction open on its thread's connection: the status write
    # that follows must be committed when it returns, not left inside that transaction.
    commits = GroupCommit()
    first, *_ = jobs
    database.execute_sql("BEGIN")
    try:
        assert transitions.mark_active(first, "w/0", via=commits).applied
        other = database.open_unshared()
        try:
            with other.cursor() as cursor:
                cursor.execute("SELECT status FROM job_status WHERE job_id = %s", (first,))
                assert cursor.fetchone() == ("active",), "committed, whatever the caller's connection holds"
        finally:
            other.close()
    finally:
        database.execute_sql("ROLLBACK")
        commits.close()


def test_unstorable_output_shares_a_commit_with_other_ends_and_is_stored(jobs, held_row):
    # An error message and a stack holding NUL characters, a result with NaN: each end is stored
    # (made storable), and none of them fails the others of its transaction.
    commits = GroupCommit()
    first, *others = jobs
    for job_id in jobs:
        assert transitions.mark_active(job_id, "w/0").applied
    nul = transitions.Failure("Boom", "bad\x00thing", "Traceback\x00 (most recent call last)")
    answers = behind_a_held_row(
        held_row,
        commits,
        first,
        lambda: transitions.mark_completed(first, 1, "w/0", {"ok": True}, via=commits),
        [
            lambda: transitions.mark_failed(others[0], 1, "w/0", nul, via=commits),
            lambda: transitions.mark_completed(others[1], 1, "w/0", {"score": float("nan")}, via=commits),
            lambda: transitions.mark_completed(others[2], 1, "w/0", ["a\x00b"], via=commits),
        ],
    )

    assert all(answer.applied for answer in answers.values())
    assert (commits.writes, commits.transactions) == (4, 2), "the three shared one transaction"
    failed = job_row(others[0])
    assert (failed["status"], failed["error_message"]) == ("failed", "bad\ufffdthing")
    assert "\x00" not in failed["error_stack"]
    assert job_row(others[1])["result"]["not_stored"].startswith("not JSON: Out of range float values")
    assert job_row(others[2])["result"] == ["a\ufffdb"]


def test_a_refused_end_that_waited_says_when_its_execution_ended_not_when_it_arrived(jobs, held_row):
    # The end of an execution is an age, measured when the statement is sent: one that waited in
    # the queue (behind a held row here; behind a lost database in life) is not dated late.
    from middleware.lease import clock

    commits = GroupCommit()
    first, late, *_ = jobs
    for job_id in (first, late):
        assert transitions.mark_active(job_id, "w/0").applied
    assert transitions.mark_retrying(late, 1, "w/0", transitions.Failure("E", "taken back", "")).applied
    ended = clock()
    answers = behind_a_held_row(
        held_row,
        commits,
        first,
        lambda: transitions.mark_completed(first, 1, "w/0", None, via=commits),
        [
            lambda: transitions.mark_completed(
                late, 1, "w/1", None, ended_ms_ago=transitions.Age(ended, clock), via=commits
            )
        ],
        before_release=lambda: wait_for(lambda: clock() > ended + 1.0, what="the late end to have waited a second"),
    )

    assert answers[0].outcome == "rejected"
    refused_at, ended_at = database.execute_sql(
        "SELECT created_at, (details->>'ended_at')::timestamptz FROM job_events"
        " WHERE job_id = %s::uuid AND event = 'transition_rejected'",
        (late,),
    ).fetchone()
    assert (refused_at - ended_at).total_seconds() >= 1.0, "dated when the execution ended"


class _Interruption(BaseException):
    """Stands for an asynchronous exception (TimeLimit, an abort) landing in a leading thread."""


def test_an_interrupted_leader_hands_its_other_writes_back_to_be_tried_again(jobs, held_row, monkeypatch):
    commits = GroupCommit()
    first, *others = jobs
    execute = commits._execute

    def interrupted_once(batch):
        if len(batch) > 1:  # the batch of the writes that queued: its leader is interrupted
            monkeypatch.setattr(commits, "_execute", execute)
            raise _Interruption()
        return execute(batch)

    monkeypatch.setattr(commits, "_execute", interrupted_once)
    answers = behind_a_held_row(
        held_row,
        commits,
        first,
        lambda: transitions.mark_active(first, "w/0", via=commits),
        [
            lambda j=job_id, i=i: _caught(lambda: transitions.mark_active(j, f"w/{i + 1}", via=commits))
            for i, job_id in enumerate(others)
        ],
    )

    kinds = sorted(type(answer).__name__ for answer in answers.values())
    assert kinds == ["LeaderInterrupted", "LeaderInterrupted", "_Interruption"], "only the leader is interrupted"
    retried = [others[i] for i, answer in answers.items() if isinstance(answer, LeaderInterrupted)]
    assert all(is_transient(answers[i]) for i in answers if isinstance(answers[i], LeaderInterrupted)), (
        "a connection error: its caller tries again on its own connection"
    )
    assert all(transitions.mark_active(job_id, "w/9", via=commits).applied for job_id in retried), "it works on"
    assert statuses([first, *retried]) == dict.fromkeys([first, *retried], "active")
    commits.close()


def _caught(call):
    try:
        return call()
    except _Interruption as interruption:
        return interruption


def test_a_write_behind_a_leader_that_vanished_takes_the_lead(jobs):
    commits = GroupCommit()
    commits._busy = True  # a leader interrupted between its steps: nothing runs, nothing hands over
    threads, answers = in_threads([lambda: transitions.mark_active(jobs[0], "w/0", via=commits)])
    for thread in threads:
        thread.join(timeout=10)
    assert answers[0].applied
    assert (commits.queued(), commits._busy) == (0, False)
    commits.close()
