"""The database's own ceilings on what is stored (0017_stored_limits.sql): each one probed by a
direct call of a function, as the role that may call it (a compromised worker, a buggy service, a
user's transaction), refused in one line that says what and by how much, with nothing written;
and a value at the ceiling stored, so that the ceilings are the numbers db.storable.CEILINGS
says (which the JOBS_MAX_... settings may not exceed). A worker probes as a worker process that
acts as itself (its session presents its own token, which its heartbeat recorded: 0016), so that
what refuses its call is the ceiling, not the check of who it is."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import psycopg2
import psycopg2.errors
import pytest

from db.storable import CEILINGS, MAX_OPTIONS_BYTES, MAX_PROGRESS_MESSAGE_CHARS
from jobs import service
from tests.helpers import as_admin, job_row, worker_limits

PROCESS = "host-a:1:boot"
WORKER = f"{PROCESS}/1"
DAYS_70_MS = 70 * 24 * 3_600_000
# The longest id of a worker's thread (host:pid:boot/thread) the database stores.
MAX_WORKER_ID_CHARS = 500
HEARTBEAT = "SELECT worker_heartbeat(%(worker)s, %(host)s, 1, 30000, %(broker)s)"
START = "SELECT outcome FROM job_start(%s, %s)"


def nested(depth: int) -> str:
    """The JSON of a list nested `depth` deep, [[...]] (json.dumps gives up near 1,000)."""
    return "[" * depth + "]" * depth


def stored() -> list[tuple]:
    """Everything the probes could write, as the administrator reads it."""
    return as_admin(
        "SELECT (SELECT count(*) FROM job_events), (SELECT count(*) FROM workers),"
        " (SELECT count(*) FROM course_modules), (SELECT jsonb_agg(to_jsonb(j) ORDER BY job_id) FROM job_status j),"
        " (SELECT jsonb_agg(to_jsonb(w) ORDER BY worker_id) FROM workers w)"
    )


def refused(conn, statement: str, params: dict, message: str) -> None:
    """The statement is refused as over a ceiling, in one line matching `message`, and nothing
    the probes could write has changed."""
    before = stored()
    with pytest.raises(psycopg2.errors.CheckViolation) as raised, conn.cursor() as cursor:
        cursor.execute(statement, params)
    primary = raised.value.diag.message_primary
    assert re.fullmatch(message, primary), primary
    assert "\n" not in primary and len(primary) < 200, primary
    conn.rollback()
    assert stored() == before, "a refused call wrote something"


def accepted(conn, statement: str, params: dict | tuple) -> list[tuple]:
    with conn.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall()


def a_worker_process(worker_session, process: str = PROCESS):
    """A session of the workers' role that is the worker process `process`: it presents a token of
    its own, which its first heartbeat records with that id (0016_worker_tokens.sql)."""
    conn = worker_session()
    accepted(conn, HEARTBEAT, {"worker": process, "host": "host-a", "broker": None})
    return conn


@pytest.fixture
def as_worker_process(worker_session):
    """PROCESS's own session, holding a live lease: WORKER is one of its threads."""
    return a_worker_process(worker_session)


@pytest.fixture
def running(stub_broker, tenants, as_worker_process):
    """`running()`: the id of a job that WORKER runs now, at its first attempt, started by its
    own process's session (as_worker_process)."""

    def start(job_type: str = "test_job", args: dict | None = None) -> str:
        job_id = service.send_job(job_type, user_id=tenants.acme.admin, args=args)
        assert accepted(as_worker_process, START, (job_id, WORKER)) == [("applied",)]
        return job_id

    return start


# Sends, as the services' role --------------------------------------------------------------------

SEND = (
    "SELECT created FROM job_send(gen_random_uuid(), %(type)s, %(queue)s, %(user)s, NULL, %(args)s::jsonb,"
    " %(kwargs)s::jsonb, %(options)s::jsonb, 4, %(delay)s, NULL)"
)


def send(tenants, **changes: object) -> dict:
    values = {"type": "test_job", "queue": "default", "args": "[]", "kwargs": "{}", "options": "{}", "delay": None}
    return {**values, "user": tenants.acme.members[0], **changes}


def text_of(size: int, payload: int) -> str:
    """A JSON object {"a": "xxx..."} of `size` bytes in all (PostgreSQL writes `{"a": "..."}`)."""
    return json.dumps({"a": "x" * (size - payload)})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"type": "t" * 201}, r"job_status\.job_type: 201 characters, more than the 200 the database stores"),
        ({"type": ""}, r"job_status\.job_type is empty: the database stores 1 to 200 characters"),
        ({"queue": "q" * 201}, r"job_status\.queue: 201 characters, more than the 200 the database stores"),
        (
            {"args": f"[{nested(CEILINGS.max_args_depth + 1)}]"},
            r"job_status\.args: an argument nests lists and objects more than 100 deep, deeper than the database stores",
        ),
        (
            {"kwargs": f'{{"a": {nested(5_000)}}}'},
            r"job_status\.args: an argument nests lists and objects more than 100 deep, deeper than the database stores",
        ),
        (
            # args '[]' (2 bytes) and kwargs: one byte more than the ceiling.
            {"kwargs": text_of(CEILINGS.max_args_bytes - 1, 9)},
            r"job_status\.args and kwargs: 16000001 bytes of JSON, more than the 16000000 the database stores",
        ),
        (
            {"options": text_of(MAX_OPTIONS_BYTES + 1, 9)},
            r"job_status\.options: 1000001 bytes of JSON, more than the 1000000 the database stores",
        ),
        (
            {"options": f'{{"a": {nested(101)}}}'},
            r"job_status\.options: an option nests lists and objects more than 100 deep, deeper than the database stores",
        ),
        ({"delay": DAYS_70_MS + 1}, r"a delay of 6048000001 ms: the database takes 0 to 6048000000"),
        ({"delay": 2**63 - 1}, r"a delay of 9223372036854775807 ms: the database takes 0 to 6048000000"),
        ({"delay": -1}, r"a delay of -1 ms: the database takes 0 to 6048000000"),
    ],
)
def test_a_send_over_a_ceiling_is_refused(tenants, as_service, changes, message):
    refused(as_service, SEND, send(tenants, **changes), message)


def test_a_send_at_the_ceilings_is_stored_and_a_byte_more_is_not(tenants, as_service):
    args = f"[{nested(CEILINGS.max_args_depth)}]"
    at_ceilings = {
        "type": "t" * 200,
        "queue": "q" * 200,
        "args": args,
        "kwargs": text_of(CEILINGS.max_args_bytes - len(args), 9),
        "options": text_of(MAX_OPTIONS_BYTES, 9),
        "delay": CEILINGS.max_delay_ms,
    }
    refused(
        as_service,
        SEND,
        send(tenants, **{**at_ceilings, "kwargs": text_of(CEILINGS.max_args_bytes - len(args) + 1, 9)}),
        r"job_status\.args and kwargs: 16000001 bytes of JSON, more than the 16000000 the database stores",
    )
    assert accepted(as_service, SEND, send(tenants, **at_ceilings)) == [(True,)]
    (size,) = as_admin("SELECT octet_length(args::text) + octet_length(kwargs::text) FROM job_status")[0]
    assert size == CEILINGS.max_args_bytes


# A job's output and its progress, as the workers' role ---------------------------------------------

FINISH = "SELECT outcome FROM job_finish(%(job)s, 1, %(to)s, %(worker)s, %(result)s::jsonb, %(type)s, %(message)s, %(stack)s, 0)"


def finish(job_id: str, **changes: object) -> dict:
    values = {"to": "failed", "result": None, "type": "RuntimeError", "message": "m", "stack": "s"}
    return {**values, "job": job_id, "worker": WORKER, **changes}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"to": "completed", "result": json.dumps("r" * (CEILINGS.max_result_bytes - 1)), "type": None},
            r"job_status\.result: 16000001 bytes of JSON, more than the 16000000 the database stores",
        ),
        (
            {"to": "completed", "result": nested(CEILINGS.max_args_depth + 1), "type": None},
            r"job_status\.result: the result nests lists and objects more than 100 deep, deeper than the database stores",
        ),
        ({"type": "E" * 201}, r"job_status\.error_type: 201 characters, more than the 200 the database stores"),
        (
            {"message": "m" * (CEILINGS.max_error_message_chars + 1)},
            r"job_status\.error_message: 40001 characters, more than the 40000 the database stores",
        ),
        (
            {"stack": "s" * (CEILINGS.max_error_stack_chars + 1)},
            r"job_status\.error_stack: 160001 characters, more than the 160000 the database stores",
        ),
    ],
)
def test_an_end_over_a_ceiling_is_refused(running, as_worker_process, changes, message):
    job_id = running()
    refused(as_worker_process, FINISH, finish(job_id, **changes), message)
    assert job_row(job_id)["status"] == "active"


def test_an_end_at_the_ceilings_is_stored_and_a_character_more_is_not(running, as_worker_process):
    failed, completed = running(), running()
    at_ceilings = {
        "type": "E" * 200,
        "message": "m" * CEILINGS.max_error_message_chars,
        "stack": "s" * CEILINGS.max_error_stack_chars,
    }
    refused(
        as_worker_process,
        FINISH,
        finish(failed, **{**at_ceilings, "stack": "s" * (CEILINGS.max_error_stack_chars + 1)}),
        r"job_status\.error_stack: 160001 characters, more than the 160000 the database stores",
    )
    assert accepted(as_worker_process, FINISH, finish(failed, **at_ceilings)) == [("applied",)]
    result = {"to": "completed", "result": json.dumps("r" * (CEILINGS.max_result_bytes - 2)), "type": None}
    assert accepted(as_worker_process, FINISH, finish(completed, **result)) == [("applied",)]
    assert len(job_row(failed)["error_stack"]) == CEILINGS.max_error_stack_chars
    assert job_row(completed)["status"] == "completed"


def test_progress_over_its_ceiling_is_refused(running, as_worker_process):
    job_id = running()
    statement = "SELECT job_progress(%(job)s, 1, 50, %(message)s)"
    refused(
        as_worker_process,
        statement,
        {"job": job_id, "message": "p" * (10 * MAX_PROGRESS_MESSAGE_CHARS + 1)},
        r"job_status\.progress_message: 10001 characters, more than the 10000 the database stores",
    )
    assert accepted(
        as_worker_process, statement, {"job": job_id, "message": "p" * 10 * MAX_PROGRESS_MESSAGE_CHARS}
    ) == [(True,)]


def test_a_stop_whose_details_are_over_their_ceiling_is_refused(running, as_worker_process):
    job_id = running()
    refused(
        as_worker_process,
        "SELECT outcome FROM job_stop(%(job)s, 1, %(worker)s, %(how)s, 0)",
        {"job": job_id, "worker": WORKER, "how": "h" * 1_000_000},
        r"job_events\.details: 1000011 bytes of JSON, more than the 1000000 the database stores",
    )
    assert job_row(job_id)["status"] == "active", "the stop's change went with its event"


def test_a_refusal_recorded_for_a_worker_named_over_the_ceiling_is_refused(running, as_worker_process):
    job_id = running()
    stop = "SELECT outcome FROM job_stop(%(job)s, 1, %(worker)s, 'abort', 0)"
    # Another thread of the job's process, named as long as a thread's id may be, and a character
    # more: not the job's worker, so its refusal is recorded, in its name.
    thread = f"{PROCESS}/" + "t" * (MAX_WORKER_ID_CHARS - len(PROCESS) - 1)
    refused(
        as_worker_process,
        stop,
        {"job": job_id, "worker": thread + "t"},
        r"job_events\.worker_id: 501 characters, more than the 500 the database stores",
    )
    assert accepted(as_worker_process, stop, {"job": job_id, "worker": thread}) == [("rejected",)]
    assert as_admin("SELECT length(worker_id) FROM job_events WHERE event = 'transition_rejected'") == [(500,)]


def test_an_events_details_nest_no_deeper_than_the_ceiling(running, admin_db):
    """No function a role may call takes JSON for an event's details: the administrator probes
    the backstop itself."""
    job_id = running()
    refused(
        admin_db,
        "INSERT INTO job_events (job_id, event, attempt, details) VALUES (%(job)s, 'probe', 1, %(details)s::jsonb)",
        {"job": job_id, "details": f'{{"a": {nested(100)}}}'},
        r"job_events\.details: the value nests lists and objects more than 100 deep, deeper than the database stores",
    )


# The workers' own names, and when a job is due ---------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"worker": "w" * 301}, r"workers\.worker_id: 301 characters, more than the 300 the database stores"),
        ({"worker": ""}, r"workers\.worker_id is empty: the database stores 1 to 300 characters"),
        ({"host": "h" * 256}, r"workers\.hostname: 256 characters, more than the 255 the database stores"),
        ({"broker": "b" * 201}, r"workers\.broker_id: 201 characters, more than the 200 the database stores"),
    ],
)
def test_a_heartbeat_over_a_ceiling_is_refused(worker_session, changes, message):
    """A worker process's heartbeat, which records its id (host:pid:boot), its host and its Redis
    consumer's id: the ceiling of a process's id, 300, is shorter than a thread's, 500."""
    process = worker_session()  # its own token: the first heartbeat records it
    refused(process, HEARTBEAT, {"worker": "host-b:2:boot", "host": "host", "broker": "b", **changes}, message)
    accepted(process, HEARTBEAT, {"worker": "w" * 300, "host": "h" * 255, "broker": "b" * 200})
    assert as_admin("SELECT length(worker_id), length(hostname), length(broker_id) FROM workers") == [(300, 255, 200)]


def test_a_start_by_a_worker_named_over_the_ceiling_is_refused(stub_broker, tenants, worker_session):
    job_id = service.send_job("test_job", user_id=tenants.acme.admin)
    process = "w" * 293 + ":1:boot"  # as long as a process's id may be: it has a lease
    as_process = a_worker_process(worker_session, process)
    thread = f"{process}/" + "t" * (MAX_WORKER_ID_CHARS - len(process) - 1)  # as long as a thread's
    refused(
        as_process,
        "SELECT outcome FROM job_start(%(job)s, %(worker)s)",
        {"job": job_id, "worker": thread + "t"},
        r"job_status\.worker_id: 501 characters, more than the 500 the database stores",
    )
    assert accepted(as_process, START, (job_id, thread)) == [("applied",)]
    assert len(job_row(job_id)["worker_id"]) == MAX_WORKER_ID_CHARS


def test_a_job_is_due_no_later_than_the_ceiling_after_its_creation(stub_broker, tenants, as_worker_process, admin_db):
    """A worker's reschedule is cut to the ceiling (0021), as it is to the longest delay the
    database gives the workers: here raised to the ceiling, which a reschedule a moment after the
    job's creation would otherwise pass. No call of a role's writes a due time past the ceiling,
    so the administrator probes the backstop itself."""
    worker_limits(max_delay_ms=CEILINGS.max_delay_ms)
    job_id = service.send_job("test_job", user_id=tenants.acme.admin)
    reschedule = "SELECT job_reschedule(%s, %s, '{}')"
    assert accepted(as_worker_process, reschedule, (job_id, CEILINGS.max_delay_ms + 1_000)) == [(True,)]
    due = "SELECT scheduled_for - created_at FROM job_status"
    assert as_admin(due) == [(timedelta(milliseconds=CEILINGS.max_delay_ms),)]
    refused(
        admin_db,
        "UPDATE job_status SET scheduled_for = created_at + %(ms)s * interval '1 millisecond'",
        {"ms": CEILINGS.max_delay_ms + 1},
        r"job_status\.scheduled_for is 70 days 00:00:00\.001 after the job was created:"
        r" the database schedules a job 6048000000 ms after its creation at most",
    )


def test_a_reschedule_grows_a_jobs_options_no_further_than_their_ceiling(
    stub_broker, tenants, as_service, as_worker_process
):
    """Of a job's options, a reschedule writes only its retry count and Dramatiq's
    requeue_timestamp (0016): a number, of as many digits as the worker likes."""
    timestamp = 1_764_000_000_000
    # ', "retries": 1, "requeue_timestamp": ' and the number's digits bring the options sent to one
    # byte over the ceiling (a retry scheduled from attempt 1).
    sent = text_of(MAX_OPTIONS_BYTES + 1 - 37 - len(str(timestamp)), 9)
    assert accepted(as_service, SEND, send(tenants, options=sent)) == [(True,)]
    ((job_id,),) = as_admin("SELECT job_id::text FROM job_status")
    assert accepted(as_worker_process, START, (job_id, WORKER)) == [("applied",)]
    assert accepted(as_worker_process, FINISH, finish(job_id, to="retrying")) == [("applied",)]
    reschedule = "SELECT job_reschedule(%(job)s, 10, %(options)s::jsonb)"
    refused(
        as_worker_process,
        reschedule,
        {"job": job_id, "options": json.dumps({"retries": 1, "requeue_timestamp": timestamp})},
        r"job_status\.options: 1000001 bytes of JSON, more than the 1000000 the database stores",
    )
    one_digit_less = json.dumps({"retries": 1, "requeue_timestamp": timestamp // 10})
    assert accepted(as_worker_process, reschedule, {"job": job_id, "options": one_digit_less}) == [(True,)]
    assert as_admin("SELECT octet_length(options::text) FROM job_status") == [(MAX_OPTIONS_BYTES,)]


# A cancellation's reason, in a user's transaction --------------------------------------------------


def test_a_cancel_reason_over_its_ceiling_is_refused(stub_broker, tenants, settings):
    job_id = service.send_job("test_job", user_id=tenants.acme.admin)
    conn = psycopg2.connect(settings.database_url)
    try:
        with conn.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('role', 'jobs_user', true), set_config('jobs.user_id', %s, true)",
                (tenants.acme.admin,),
            )
        refused(
            conn,
            "SELECT outcome FROM job_cancel_request(%(job)s, %(reason)s)",
            {"job": job_id, "reason": "r" * (CEILINGS.max_reason_chars + 1)},
            r"job_status\.cancel_reason: 100001 characters, more than the 100000 the database stores",
        )
    finally:
        conn.close()
    assert job_row(job_id)["status"] == "pending"


def test_an_operators_cancel_reason_over_its_ceiling_is_refused(stub_broker, tenants, admin_db):
    job_id = service.send_job("test_job", user_id=tenants.acme.admin)
    refused(
        admin_db,
        "SELECT outcome FROM job_cancel_by_operator(%(job)s, 'ops', %(reason)s)",
        {"job": job_id, "reason": "r" * (CEILINGS.max_reason_chars + 1)},
        r"job_status\.cancel_reason: 100001 characters, more than the 100000 the database stores",
    )


# The two lines of defence agree ------------------------------------------------------------------


def test_the_ceilings_are_the_ones_python_knows(admin_db):
    with admin_db.cursor() as cursor:
        cursor.execute("SELECT name, ceiling FROM jobs_ceilings()")
        ceilings = dict(cursor.fetchall())
    assert {
        "args_bytes": CEILINGS.max_args_bytes,
        "json_depth": CEILINGS.max_args_depth,
        "result_bytes": CEILINGS.max_result_bytes,
        "error_message_chars": CEILINGS.max_error_message_chars,
        "error_stack_chars": CEILINGS.max_error_stack_chars,
        "reason_chars": CEILINGS.max_reason_chars,
        "delay_ms": CEILINGS.max_delay_ms,
        "options_bytes": MAX_OPTIONS_BYTES,
    }.items() <= ceilings.items()
    assert MAX_PROGRESS_MESSAGE_CHARS <= ceilings["progress_message_chars"]


def test_the_workers_longest_reschedule_is_no_longer_than_the_longest_send(tenants):
    """What `jobctl migrate` records for the workers (JOBS_MAX_DELAY_MS, which the settings hold to
    the ceiling too) can't pass the delay ceiling, whoever writes it."""
    with pytest.raises(psycopg2.errors.CheckViolation, match="worker_limits_max_delay_ms_ceiling"):
        worker_limits(max_delay_ms=CEILINGS.max_delay_ms + 1)
    worker_limits(max_delay_ms=CEILINGS.max_delay_ms)
    assert as_admin("SELECT max_delay_ms FROM worker_limits") == [(CEILINGS.max_delay_ms,)]


# A course's modules, as the workers' role, for the initialization that runs --------------------


@pytest.mark.parametrize(
    ("position", "title", "message"),
    [
        (1, "t" * 201, r"course_modules\.title: 201 characters, more than the 200 the database stores"),
        (1, "", r"course_modules\.title is empty: the database stores 1 to 200 characters"),
        (1_001, "Extra", r"course_modules\.position is 1001: a course has 1000 modules at most"),
    ],
)
def test_a_module_over_a_ceiling_is_refused(running, tenants, as_worker_process, position, title, message):
    job_id = running("initialize", {"course_id": tenants.acme.course})
    statement = "SELECT course_add_module(%(job)s, 1, %(course)s, %(position)s, %(title)s)"
    values = {"job": job_id, "course": tenants.acme.course, "position": position, "title": title}
    refused(as_worker_process, statement, values, message)
    accepted(as_worker_process, statement, {**values, "position": 1_000, "title": "t" * 200})
