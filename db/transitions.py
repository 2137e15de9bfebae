"""Every status write of a job: one named function each, one statement each.

The guards, timestamps and events are in the SQL functions of the migrations (0003, 0004, 0005,
0009, 0016, 0021); these functions only call them, make a job's own output storable (db.storable), and
translate their answers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import peewee
import psycopg2
import psycopg2.extensions

from . import storable, stored_json
from .connection import Limits, database, pgcode, transaction
from .errors import KeyTaken, UnknownCourse, UnknownUser
from .group_commit import GroupCommit
from .models import JobStatus
from .queries import parse_uuid

UNKNOWN_USER = "JB001"
UNKNOWN_COURSE = "JB002"
KEY_TAKEN = "JB003"


@dataclass(frozen=True)
class Outcome:
    """What a transition found: 'applied', 'terminal', 'rejected', 'missing', 'forbidden' (the
    session does not present the token of the worker it names: db/worker_token.py), or for a
    start 'no_lease' (the worker holds no live lease)."""

    outcome: str
    previous: str | None
    status: str | None
    attempts: int

    @property
    def applied(self) -> bool:
        return self.outcome == "applied"


class Age:
    """How long ago something happened, in milliseconds, measured when the statement that
    carries it is sent (psycopg2 adapts it then): a write that waited in the group commit's
    queue, or for the database to come back, still says how long ago its execution ended.

    Parameters:
      moment(float): when it happened, on `clock`'s scale.
      clock: the clock that measured it (the worker's lease clock).
    """

    def __init__(self, moment: float, clock: Callable[[], float]) -> None:
        self.moment = moment
        self.clock = clock

    def milliseconds(self) -> int:
        # Clamped to an integer's range: the SQL functions take an integer.
        return min(max(0, int((self.clock() - self.moment) * 1000)), 2**31 - 1)


psycopg2.extensions.register_adapter(Age, lambda age: psycopg2.extensions.AsIs(age.milliseconds()))


@dataclass(frozen=True)
class Failure:
    type: str
    message: str
    stack: str

    def storable(self) -> Failure:
        return Failure(
            storable.text(self.type, 200) or "",
            storable.error_message(self.message) or "",
            storable.error_stack(self.stack) or "",
        )


def _outcome(sql: str, params: tuple[Any, ...], via: GroupCommit | None = None) -> Outcome:
    if via is not None:
        return Outcome(*via.fetchone(sql, params))
    return Outcome(*database.execute_sql(sql, params).fetchone())


@dataclass(frozen=True)
class Pending:
    """One job of a batch to record as pending."""

    job_id: str
    user_id: str
    course_id: str | None
    args: list[Any]
    kwargs: dict[str, Any]
    #: The message's options (retries, time_limit, ...), kept so that a re-sent job is the same job.
    options: dict[str, Any]
    #: The sender's idempotency key: unique per user, a second send with it is the first job.
    key: str | None = None


class Recorded(NamedTuple):
    """What a send was recorded as (a tuple: a batch makes one per job)."""

    #: The job the send stands for: itself, or the user's earlier job with the same key.
    job_id: str
    #: Whether its row was written now (False: recorded before, by this send or the keyed one).
    created: bool


def record_enqueued_many(
    *, job_type: str, queue: str, max_attempts: int, delay_ms: int | None, jobs: list[Pending]
) -> list[Recorded]:
    """Inserts the pending rows and events of jobs (one, or a whole batch) in one statement, so
    one round trip and one transaction: all are committed, or none (an unknown user or course
    refuses them all). Returns what each was recorded as, in order: a job whose row exists
    already, or whose key its user has used before, is left as it is."""
    for job in jobs:
        if parse_uuid(job.user_id) is None:
            raise UnknownUser(job.user_id)
        if job.course_id is not None and parse_uuid(job.course_id) is None:
            raise UnknownCourse(job.course_id, job.user_id)
    try:
        rows = (
            _send_one(job_type, queue, max_attempts, delay_ms, jobs[0])
            if len(jobs) == 1
            else (_send_many(job_type, queue, max_attempts, delay_ms, jobs))
        )
    except peewee.DatabaseError as error:
        code = pgcode(error)
        if code == UNKNOWN_USER:
            raise UnknownUser(_refused(error, jobs, lambda j: j.user_id)) from None
        if code == UNKNOWN_COURSE:
            course = _refused(error, jobs, lambda j: j.course_id)
            raise UnknownCourse(course, next(j.user_id for j in jobs if j.course_id == course)) from None
        if code == KEY_TAKEN:
            # "the key K was given to job J of type T, not U"
            key = _refused(error, jobs, lambda j: j.key)
            found = re.search(r"given to job (\S+) of type (\S+),", str(error))
            raise KeyTaken(key, *(found.groups() if found else ("?", "?"))) from None
        raise
    return [Recorded(job_id, created) for created, job_id in rows]


def _send_one(job_type: str, queue: str, max_attempts: int, delay_ms: int | None, job: Pending) -> list[tuple]:
    # A plain call: the batch's statement below costs one send about 70 us more to plan and run.
    return database.execute_sql(
        "SELECT created, job_id::text FROM job_send(%s::uuid, %s, %s, %s::uuid, %s::uuid, %s::jsonb, %s::jsonb, %s::jsonb,"
        " %s, %s, %s)",
        (
            job.job_id,
            job_type,
            queue,
            job.user_id,
            job.course_id,
            json.dumps(job.args),
            json.dumps(job.kwargs),
            json.dumps(job.options),
            max_attempts,
            delay_ms,
            job.key,
        ),
    ).fetchall()


def _send_many(job_type: str, queue: str, max_attempts: int, delay_ms: int | None, jobs: list[Pending]) -> list[tuple]:
    # Ordered by key, so that two batches taking the same keys in other orders wait for each other
    # instead of deadlocking on the key index; the answers come back in the order given.
    ordered = sorted(enumerate(jobs), key=lambda item: (item[1].key is None, item[1].key or ""))
    payload = json.dumps(
        [
            {
                "n": n,
                "job_id": j.job_id,
                "user_id": j.user_id,
                "course_id": j.course_id,
                "args": j.args,
                "kwargs": j.kwargs,
                "options": j.options,
                "key": j.key,
            }
            for n, j in ordered
        ]
    )
    return database.execute_sql(
        "SELECT s.created, s.job_id::text FROM jsonb_to_recordset(%s::jsonb)"
        " AS j(n integer, job_id uuid, user_id uuid, course_id uuid, args jsonb, kwargs jsonb, options jsonb,"
        " key text),"
        " LATERAL job_send(j.job_id, %s, %s, j.user_id, j.course_id, j.args, j.kwargs, j.options, %s, %s,"
        " j.key) s"
        " ORDER BY j.n",
        (payload, job_type, queue, max_attempts, delay_ms),
    ).fetchall()


def _refused(error: BaseException, jobs: list[Pending], key: Callable[[Pending], str | None]) -> str:
    """Which of the batch's values the database named in its refusal."""
    text = str(error)
    return next((value for value in map(key, jobs) if value and value in text), "?")


def mark_active(job_id: str, worker_id: str, via: GroupCommit | None = None) -> Outcome:
    """pending|retrying -> active, if the worker's process holds a live lease; counts the attempt
    and records the worker.

    `via`, here and below: a GroupCommit that commits this write together with other threads'.
    `ended_ms_ago`, below: how long ago the attempt's execution ended, by the worker's clock (an
    Age, measured when the statement is sent); a refusal of the write records it as the end of
    that execution (db.audit).
    """
    return _outcome("SELECT * FROM job_start(%s::uuid, %s)", (job_id, worker_id), via)


def mark_completed(
    job_id: str,
    attempt: int,
    worker_id: str,
    result: Any,
    *,
    ended_ms_ago: int | Age = 0,
    via: GroupCommit | None = None,
) -> Outcome:
    """active -> completed, with the result (or a marker, when it can't be stored: db.storable)."""
    return _finish(job_id, attempt, "completed", worker_id, ended_ms_ago, result=result, via=via)


def mark_retrying(
    job_id: str,
    attempt: int,
    worker_id: str,
    failure: Failure,
    *,
    ended_ms_ago: int | Age = 0,
    via: GroupCommit | None = None,
) -> Outcome:
    """active -> retrying, with the error of the attempt."""
    return _finish(job_id, attempt, "retrying", worker_id, ended_ms_ago, failure=failure, via=via)


def mark_failed(
    job_id: str,
    attempt: int,
    worker_id: str,
    failure: Failure,
    *,
    ended_ms_ago: int | Age = 0,
    via: GroupCommit | None = None,
) -> Outcome:
    """active -> failed, with the error of the last attempt."""
    return _finish(job_id, attempt, "failed", worker_id, ended_ms_ago, failure=failure, via=via)


def _finish(
    job_id: str,
    attempt: int,
    to: str,
    worker_id: str,
    ended_ms_ago: int | Age,
    *,
    result: Any = None,
    failure: Failure | None = None,
    via: GroupCommit | None = None,
) -> Outcome:
    failure = failure and failure.storable()
    return _outcome(
        "SELECT * FROM job_finish(%s::uuid, %s, %s, %s, %s::jsonb, %s, %s, %s, %s)",
        (
            job_id,
            attempt,
            to,
            worker_id,
            None if result is None else json.dumps(storable.json_value(result)),
            failure and failure.type,
            failure and failure.message,
            failure and failure.stack,
            ended_ms_ago,
        ),
        via,
    )


def mark_lease_expired(
    job_id: str, attempt: int, worker_id: str, *, ended_ms_ago: int | Age, via: GroupCommit | None = None
) -> Outcome:
    """An attempt its worker stopped because its lease was running out: active -> retrying (to be
    published again by the caller) or failed at the database's delivery limit, if the job is still
    that attempt's; otherwise only the end of the execution is recorded."""
    return _outcome(
        "SELECT * FROM job_lease_expired(%s::uuid, %s, %s, %s)", (job_id, attempt, worker_id, ended_ms_ago), via
    )


def reschedule(job_id: str, delay_ms: int, options: dict[str, Any]) -> bool:
    """Records when a waiting job becomes due, and its retry count as its message is enqueued now;
    False when it is no longer waiting. The database cuts the delay (to the workers' longest, and to
    70 days after the job's creation) and keeps every other option as the job was sent
    (job_reschedule: 0016_worker_tokens.sql, 0021_tokens_and_ceilings.sql)."""
    row = database.execute_sql(
        "SELECT job_reschedule(%s::uuid, %s, %s::jsonb)", (job_id, delay_ms, json.dumps(options))
    ).fetchone()
    return bool(row and row[0])


def record_progress(job_id: str, attempt: int, progress: int, message: str | None) -> bool:
    """Sets the progress of the attempt that runs now (its message cut to what is stored:
    db.storable); never touches a finished job."""
    row = database.execute_sql(
        "SELECT job_progress(%s::uuid, %s, %s, %s)", (job_id, attempt, progress, storable.progress_message(message))
    ).fetchone()
    return bool(row and row[0])


def cancel(job_id: str, reason: str | None) -> Outcome:
    """pending|retrying|active -> cancelled, on behalf of the user of the current scope
    (db.scope.as_user), if they own the job or are an admin of its organization; the outcome
    says why not otherwise ('forbidden', 'finished', 'missing' for another organization's job...)."""
    return _outcome("SELECT * FROM job_cancel_request(%s::uuid, %s)", (job_id, reason))


def cancel_by_operator(admin_url: str, limits: Limits, job_id: str, operator: str, reason: str | None) -> Outcome:
    """pending|retrying|active -> cancelled, by an operator (recorded with their name). It runs
    on a connection of its own as an administrator (`admin_url`, bounded by `limits`): the roles
    of workers and users can't call it."""
    with transaction(admin_url, limits) as cursor:
        cursor.execute("SELECT * FROM job_cancel_by_operator(%s::uuid, %s, %s)", (job_id, operator, reason))
        return Outcome(*cursor.fetchone())


@dataclass(frozen=True)
class Retry:
    #: 'retried', 'already_retried', 'forbidden', 'not_retryable' or 'missing'.
    outcome: str
    #: The retried job's status.
    status: str | None
    #: The retry: the new job, or the one made before.
    job_id: str | None
    #: What the new job was recorded with ('retried' only): publish exactly this.
    job_type: str | None = None
    user_id: str | None = None
    course_id: str | None = None
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None
    options: dict[str, Any] | None = None


def retry(job_id: str, new_job_id: str, job_types: list[str]) -> Retry:
    """Records `new_job_id` as the retry of a failed or cancelled job, on behalf of the user of
    the current scope (db.scope.as_user), who must own it or be an admin of its organization:
    its pending row and a 'retried' event on the old job, in one transaction. A job of a type
    not in `job_types` (those the caller can run) is not retried ('unknown_type')."""
    row = database.execute_sql(
        "SELECT * FROM job_retry_request(%s::uuid, %s::uuid, %s::text[])", (job_id, new_job_id, job_types)
    ).fetchone()
    outcome, status, retry_id, job_type, user_id, course_id, args, kwargs, options = row
    return Retry(outcome, status, _text(retry_id), job_type, _text(user_id), _text(course_id), args, kwargs, options)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def mark_stopped(
    job_id: str, attempt: int, worker_id: str, how: str, *, ended_ms_ago: int | Age = 0, via: GroupCommit | None = None
) -> Outcome:
    """Records that a running attempt stopped because its job was cancelled."""
    return _outcome(
        "SELECT * FROM job_stop(%s::uuid, %s, %s, %s, %s)", (job_id, attempt, worker_id, how, ended_ms_ago), via
    )


def is_cancelled(job_id: str) -> bool:
    return JobStatus.select().where(JobStatus.job_id == job_id, JobStatus.status == "cancelled").exists()


@dataclass(frozen=True)
class Reaped:
    job_id: str
    job_type: str
    queue: str
    user_id: str
    course_id: str | None
    args: list[Any]
    kwargs: dict[str, Any]
    #: The options of its message as last enqueued.
    options: dict[str, Any]
    #: 'retrying' (to be published again) or 'failed' (its delivery limit reached); for
    #: waiting_jobs, the job's status.
    outcome: str
    #: For waiting_jobs: how long until it is due (a delay or a retry's backoff), 0 if it is.
    due_in_ms: int = 0

    @property
    def unreadable(self) -> bool:
        """Its arguments or options, stored before the database's ceilings, are nested too deep
        for Python to read (db.stored_json): it can't be sent again, only failed (fail_unsendable)."""
        return stored_json.is_unreadable(self.args, self.kwargs, self.options)


def fail_unsendable(job_id: str) -> Outcome:
    """pending|retrying -> failed, for a job whose stored arguments or options are over the
    database's ceilings (a row stored before them): it can't be sent to a worker. The database
    judges that itself, and refuses ('rejected') any other job, or one no longer waiting."""
    return _outcome("SELECT * FROM job_fail_unsendable(%s::uuid)", (job_id,))


def heartbeat(
    worker_process: str, hostname: str, pid: int, *, lease_ms: int, broker_id: str | None, timeout_ms: int = 0
) -> int:
    """Renews the process's lease, on behalf of this process only (the first heartbeat of a worker
    id records the worker token this process presents; db/worker_token.py). Returns the lease the
    database gave, in milliseconds, from now by its clock: `lease_ms`, or less if that is more than
    the server allows. `timeout_ms`: the statement timeout of the calling thread's connection, set
    when it is opened (a heartbeat stuck behind a slow server is worth less than the next one)."""
    if timeout_ms and database.is_closed():
        database.connect()
        database.execute_sql("SELECT set_config('statement_timeout', %s, false)", (str(timeout_ms),))
    return database.execute_sql(
        "SELECT worker_heartbeat(%s, %s, %s, %s, %s)", (worker_process, hostname, pid, lease_ms, broker_id)
    ).fetchone()[0]


def worker_stopped(worker_process: str, *, release: bool) -> None:
    """Records that the process stopped; `release`: none of its threads runs a job any more, so its
    lease ends now (otherwise it runs out). Only the process itself may say so."""
    database.execute_sql("SELECT worker_stopped(%s, %s)", (worker_process, release))


def reap(*, expired_by: datetime | None = None) -> list[Reaped]:
    """Takes back the active jobs of workers whose lease ran out (by `expired_by`, if given), with
    the database's window and delivery limit: see job_reap in 0016_worker_tokens.sql."""
    rows = database.execute_sql("SELECT * FROM job_reap(%s)", (expired_by,)).fetchall()
    return [
        Reaped(str(job_id), job_type, queue, str(user_id), course_id and str(course_id), args, kwargs, options, outcome)
        for job_id, job_type, queue, user_id, course_id, args, kwargs, options, outcome in rows
    ]


def consumer_leases(broker_ids: list[str]) -> tuple[dict[str, bool], datetime]:
    """For those of `broker_ids` (Redis consumers) that belong to a worker process the database
    knows, whether that process's lease still runs (the others are absent); and the moment, by
    the database's clock, that this judges (reap takes back only leases run out by then)."""
    now = database.execute_sql("SELECT clock_timestamp()").fetchone()[0]
    if not broker_ids:
        return {}, now
    rows = database.execute_sql(
        "SELECT broker_id, bool_or(lease_expires_at > %s) FROM workers WHERE broker_id = ANY(%s) GROUP BY broker_id",
        (now, broker_ids),
    ).fetchall()
    return dict(rows), now


def waiting_jobs(older_than_ms: int) -> list[Reaped]:
    """Pending and retrying jobs not updated for `older_than_ms`: those whose message may be lost."""
    rows = database.execute_sql(
        "SELECT job_id, job_type, queue, user_id, course_id, args, kwargs, options, status,"
        " greatest(0, ceil(extract(epoch FROM scheduled_for - clock_timestamp()) * 1000))::bigint"
        " FROM job_status WHERE status IN ('pending', 'retrying')"
        " AND updated_at < clock_timestamp() - %s * interval '1 millisecond'",
        (older_than_ms,),
    ).fetchall()
    return [
        Reaped(
            str(job_id), job_type, queue, str(user_id), course_id and str(course_id), args, kwargs, options, status, due
        )
        for job_id, job_type, queue, user_id, course_id, args, kwargs, options, status, due in rows
    ]
