"""Limits on everything stored: a send or a cancel over a limit is refused with one line that
names the limit and writes nothing; a job's own oversized output is cut, its outcome recorded;
no error message or log line repeats more than a short excerpt of what it was given."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import dramatiq
import pytest

from db import storable
from db.connection import database
from jobs import service
from jobs.errors import InvalidArguments, JobError
from tests.helpers import count, events, job_row
from tests.support.cli import jobctl

ALICE = "alice@acme.example"
#: The longest error message (or log line) that may echo what it was given.
SHORT = 300
#: A log line carries no more than a stack's worth of one job's output.
BOUNDED_LOG = 40_000


def deeply_nested(depth: int) -> dict:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return {"delay_ms": value}


@pytest.fixture
def nothing_written(stub_broker):
    """Whatever the test sends or cancels: no row, no event, no message."""
    before = count("job_status"), count("job_events")
    yield
    assert (count("job_status"), count("job_events")) == before
    assert stub_broker.queues["default"].qsize() == 0
    assert stub_broker.queues["default.DQ"].qsize() == 0


@pytest.fixture
def limits() -> Iterator:
    """`limits(max_reason_chars=10)`: storage limits for this test only."""
    saved = storable.limits()

    def configure(**changes: int) -> None:
        storable.configure(dataclasses.replace(saved, **changes))

    yield configure
    storable.configure(saved)


def one_line(error: BaseException | str) -> str:
    text = str(error)
    assert "\n" not in text, f"more than one line: {text[:200]!r}"
    assert len(text) <= SHORT, f"{len(text)} characters: {text[:200]!r}..."
    return text


def refused(*args: str, env: dict[str, str] | None = None) -> str:
    """The one line of a command that must be refused as bad input."""
    done = jobctl(*args, env=env)
    assert done.returncode == 2, (done.returncode, done.stderr[:500])
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    return one_line(line)


def waiting_job(tenants) -> str:
    return service.send_job("test_job", user_id=tenants.acme.members[0], delay_ms=60_000)


# A cancel reason ---------------------------------------------------------------------------------


def test_a_10_mb_cancel_reason_is_refused_and_nothing_is_written(tenants, stub_broker, log_records, settings):
    job_id = waiting_job(tenants)
    before = events(job_id)
    reason = "r" * 10_000_000
    with pytest.raises(JobError, match="JOBS_MAX_REASON_CHARS") as raised:
        service.cancel_job(job_id, tenants.acme.members[0], reason)
    one_line(raised.value)
    with pytest.raises(JobError, match="JOBS_MAX_REASON_CHARS") as raised:
        service.cancel_job_as_operator(job_id, "ops", reason, admin_url=settings.admin_database_url)
    one_line(raised.value)
    assert job_row(job_id)["status"] == "pending" and events(job_id) == before
    assert all(len(str(record.msg)) < BOUNDED_LOG for record in log_records)


def test_a_cancel_reason_over_the_limit_is_refused_by_the_command(tenants, stub_broker):
    job_id = waiting_job(tenants)
    before = events(job_id)
    # One argument of a command may hold 128 kB at most (Linux): over the default limit all the same.
    line = refused("cancel", job_id, "--as", ALICE, "--reason", "r" * 100_000)
    assert "JOBS_MAX_REASON_CHARS" in line
    line = refused("cancel", job_id, "--operator", "ops", "--reason", "r" * 100_000)
    assert "JOBS_MAX_REASON_CHARS" in line
    line = refused(
        "cancel", job_id, "--as", ALICE, "--reason", "twenty characters!!!", env={"JOBS_MAX_REASON_CHARS": "10"}
    )
    assert "JOBS_MAX_REASON_CHARS" in line and "10" in line
    assert job_row(job_id)["status"] == "pending" and events(job_id) == before


def test_a_cancel_reason_within_the_limit_is_kept_whole(tenants, stub_broker, limits):
    limits(max_reason_chars=20)
    job_id = waiting_job(tenants)
    service.cancel_job(job_id, tenants.acme.members[0], "x" * 20)
    assert job_row(job_id)["cancel_reason"] == "x" * 20


# A job's own output ------------------------------------------------------------------------------


def huge_error() -> None:
    raise RuntimeError("e" * 20_000_000)


def deep_stack(depth: int = 0) -> None:
    if depth < 900:
        deep_stack(depth + 1)
    raise RuntimeError("at the bottom")


def big_result() -> str:
    return "x" * 5_000


def test_a_20_mb_error_message_is_stored_cut_and_the_failure_recorded(tenants, stub_broker, stub_worker, log_records):
    actor = dramatiq.actor(huge_error, broker=stub_broker, max_retries=0)
    job_id = actor.send_with_options(job_owner={"user_id": tenants.acme.members[0]}).message_id
    stub_broker.join("default", fail_fast=False)
    stub_worker.join()
    job = job_row(job_id)
    assert (job["status"], job["error_type"]) == ("failed", "RuntimeError")
    limit = storable.limits().max_error_message_chars
    assert job["error_message"].startswith("e" * 100)
    assert job["error_message"].endswith(f"... [20000000 characters, cut to {limit}]")
    assert len(job["error_message"]) == limit
    assert len(job["error_stack"]) == storable.limits().max_error_stack_chars
    assert job["error_stack"].startswith("[") and "characters, cut to" in job["error_stack"]
    with database.execute_sql(
        "SELECT max(length(details::text)) FROM job_events WHERE job_id = %s", (job_id,)
    ) as cursor:
        (longest,) = cursor.fetchone()
    assert longest < limit + 1_000, "its event holds it cut too"
    assert all(len(str(record.msg)) < BOUNDED_LOG for record in log_records), "a log line carried the whole error"


def test_the_output_limits_are_configurable(tenants, stub_broker, stub_worker, limits):
    limits(max_error_message_chars=100, max_error_stack_chars=500, max_result_bytes=1_000)
    owner = {"job_owner": {"user_id": tenants.acme.members[0]}}
    failing = dramatiq.actor(huge_error, broker=stub_broker, max_retries=0).send_with_options(**owner).message_id
    deep = dramatiq.actor(deep_stack, broker=stub_broker, max_retries=0).send_with_options(**owner).message_id
    big = dramatiq.actor(big_result, broker=stub_broker, max_retries=0).send_with_options(**owner).message_id
    stub_broker.join("default", fail_fast=False)
    stub_worker.join()
    assert len(job_row(failing)["error_message"]) == 100
    stack = job_row(deep)["error_stack"]
    assert stack.startswith("[") and "characters, cut to 500]" in stack and len(stack) == 500
    assert stack.rstrip().endswith("RuntimeError: at the bottom"), "the end of a stack is kept"
    result = job_row(big)
    assert result["status"] == "completed"
    assert "JOBS_MAX_RESULT_BYTES" in result["result"]["not_stored"]


# Bad input is echoed as a short excerpt ----------------------------------------------------------


@pytest.mark.parametrize("size", [120_000, 10_000_000])
def test_bad_input_is_echoed_as_a_short_excerpt(tenants, nothing_written, size):
    user = tenants.acme.members[0]
    big = "\x1b[31m" + "z" * size
    cases = [
        lambda: service.send_job(big, user_id=user),
        lambda: service.send_job("test_job", user_id=user, args={big: 1}),
        lambda: service.send_job("test_job", user_id=user, args=[big]),
        lambda: service.send_job("test_job", user_id=user, args={"delay_ms": big}),
        lambda: service.send_job("test_job", user_id=user, delay_ms=big),
        lambda: service.send_jobs("test_job", [{"should_fail": big}], user_id=user),
        lambda: service.send_job("test_job", user_id=big),
    ]
    for case in cases:
        with pytest.raises(JobError) as raised:
            case()
        assert "\x1b" not in one_line(raised.value)


def test_the_command_echoes_bad_input_as_a_short_excerpt(tenants, nothing_written):
    big = "\x1b[31m" + "z" * 100_000
    for args in (
        ("send", big, "--as", ALICE),
        ("send", "test_job", "--as", ALICE, "--args", big),
        ("send", "test_job", "--as", ALICE, "--args", json.dumps({big: 1})),
        ("send", "test_job", "--as", ALICE, "--args", json.dumps({"delay_ms": big})),
        ("send", "test_job", "--as", big),
        ("cancel", big, "--as", ALICE),
        ("cancel", "0" * 40 + big, "--operator", "ops"),
        ("list", "--as", ALICE, "--since", big),
    ):
        assert "\x1b" not in refused(*args)
    usage = jobctl("send", "test_job", "--as", ALICE, "--delay-ms", "9" * 100_000)
    assert usage.returncode == 2 and len(usage.stderr) < 1_000, usage.stderr[-300:]


# Arguments: nesting and size ---------------------------------------------------------------------


def test_arguments_nested_50000_deep_are_refused_without_a_crash(tenants, nothing_written):
    user = tenants.acme.members[0]
    with pytest.raises(InvalidArguments, match="JOBS_MAX_ARGS_DEPTH") as raised:
        service.send_job("test_job", user_id=user, args=deeply_nested(50_000))
    one_line(raised.value)
    with pytest.raises(InvalidArguments, match="JOBS_MAX_ARGS_DEPTH"):
        service.send_jobs("test_job", [{}, deeply_nested(50_000)], user_id=user)


def test_arguments_nested_50000_deep_are_refused_by_the_command(tenants, nothing_written):
    nested = "[" * 50_000 + "]" * 50_000
    assert "JOBS_MAX_ARGS_DEPTH" in refused("send", "test_job", "--as", ALICE, "--args", f'{{"a": {nested}}}')
    line = refused("send", "test_job", "--as", ALICE, "--args", '{"a": [[[1]]]}', env={"JOBS_MAX_ARGS_DEPTH": "2"})
    assert "JOBS_MAX_ARGS_DEPTH" in line


def test_arguments_over_the_depth_limit_are_refused(tenants, nothing_written, limits):
    """Each argument may nest lists and objects that deep; the object of arguments is not counted."""
    limits(max_args_depth=2)
    with pytest.raises(InvalidArguments, match="JOBS_MAX_ARGS_DEPTH"):
        service.send_job("test_job", user_id=tenants.acme.members[0], args={"a": [[[1]]]})
    with pytest.raises(InvalidArguments, match="unexpected keyword argument 'a'"):
        service.send_job("test_job", user_id=tenants.acme.members[0], args={"a": [[1]]})


def test_arguments_over_the_size_limit_are_refused(tenants, nothing_written, limits):
    user = tenants.acme.members[0]
    with pytest.raises(InvalidArguments, match="JOBS_MAX_ARGS_BYTES") as raised:
        service.send_job("test_job", user_id=user, args={"a": "x" * 2_000_000})
    one_line(raised.value)
    limits(max_args_bytes=100)
    with pytest.raises(InvalidArguments, match="JOBS_MAX_ARGS_BYTES"):
        service.send_job("test_job", user_id=user, args={"a": "x" * 200})
    with pytest.raises(InvalidArguments, match="JOBS_MAX_ARGS_BYTES"):
        service.send_jobs("test_job", [{}, {"a": "x" * 200}], user_id=user)
    with pytest.raises(InvalidArguments, match="JOBS_MAX_ARGS_BYTES"):
        dramatiq.get_broker().get_actor("test_job").send_with_options(
            kwargs={"a": "x" * 200}, job_owner={"user_id": user}
        )


def test_arguments_over_the_size_limit_are_refused_by_the_command(tenants, nothing_written):
    line = refused("send", "test_job", "--as", ALICE, "--args", '{"delay_ms": 1}', env={"JOBS_MAX_ARGS_BYTES": "10"})
    assert "JOBS_MAX_ARGS_BYTES" in line
    line = refused(
        "send",
        "test_job",
        "--as",
        ALICE,
        "--count",
        "3",
        "--args",
        '{"delay_ms": 1}',
        env={"JOBS_MAX_ARGS_BYTES": "10"},
    )
    assert "JOBS_MAX_ARGS_BYTES" in line


# A delay -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("delay_ms", [10**14, 2**63 - 1, 2**64])
def test_a_delay_over_the_limit_is_refused(tenants, nothing_written, delay_ms):
    user = tenants.acme.members[0]
    with pytest.raises(InvalidArguments, match="JOBS_MAX_DELAY_MS") as raised:
        service.send_job("test_job", user_id=user, delay_ms=delay_ms)
    one_line(raised.value)
    with pytest.raises(InvalidArguments, match="JOBS_MAX_DELAY_MS"):
        service.send_jobs("test_job", [{}], user_id=user, delay_ms=delay_ms)


@pytest.mark.parametrize("delay_ms", ["100000000000000", "9223372036854775807"])
def test_a_delay_over_the_limit_is_refused_by_the_command(tenants, nothing_written, delay_ms):
    assert "JOBS_MAX_DELAY_MS" in refused("send", "test_job", "--as", ALICE, "--delay-ms", delay_ms)
    assert "JOBS_MAX_DELAY_MS" in refused("send", "test_job", "--as", ALICE, "--count", "2", "--delay-ms", delay_ms)


def test_the_delay_limit_is_configurable(tenants, nothing_written, limits):
    line = refused("send", "test_job", "--as", ALICE, "--delay-ms", "1001", env={"JOBS_MAX_DELAY_MS": "1000"})
    assert "JOBS_MAX_DELAY_MS" in line and "1000" in line
    limits(max_delay_ms=1_000)
    with pytest.raises(InvalidArguments, match="JOBS_MAX_DELAY_MS"):
        service.send_job("test_job", user_id=tenants.acme.members[0], delay_ms=1_001)


def test_a_delay_of_seven_days_is_accepted(tenants, stub_broker):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0], delay_ms=7 * 24 * 3_600_000)
    assert job_row(job_id)["status"] == "pending"


def test_limit_settings_must_be_positive_whole_numbers():
    from middleware.settings import ConfigurationError, Settings

    with pytest.raises(ConfigurationError, match="JOBS_MAX_ARGS_BYTES"):
        Settings.from_env({"JOBS_MAX_ARGS_BYTES": "0"})
    with pytest.raises(ConfigurationError, match="JOBS_MAX_DELAY_MS"):
        Settings.from_env({"JOBS_MAX_DELAY_MS": "lots"})


@pytest.mark.parametrize("operator", ["", "   ", "o" * 201, "nul\x00"])
def test_an_operators_name_is_a_name_of_bounded_length(stub_broker, tenants, settings, operator):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    with pytest.raises(JobError, match="operator"):
        service.cancel_job_as_operator(job_id, operator, admin_url=settings.admin_database_url)
    assert job_row(job_id)["status"] == "pending" and [e[0] for e in events(job_id)] == ["enqueued"]


def test_an_operators_long_name_through_the_command_line_is_one_line(stub_broker, tenants):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    refused = jobctl("cancel", job_id, "--operator", "o" * 300)
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1 and "CONTEXT" not in refused.stderr
    assert job_row(job_id)["status"] == "pending"


def test_a_reason_holding_a_nul_is_refused_in_one_line(stub_broker, tenants):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    with pytest.raises(JobError, match="NUL"):
        service.cancel_job(job_id, tenants.acme.admin, reason="a\x00b")
    assert job_row(job_id)["status"] == "pending"


def test_arguments_that_hold_themselves_are_refused_not_walked_for_ever(stub_broker, tenants):
    looped: list = []
    looped.append(looped)
    with pytest.raises(InvalidArguments):
        service.send_job("test_job", user_id=tenants.acme.admin, args={"delay_ms": looped})
    assert count("job_status") == 0


# The database's ceilings: the settings stay below them, and Python says first what it refuses ------


@pytest.mark.parametrize("name", [field.name for field in dataclasses.fields(storable.StorageLimits)])
def test_a_limit_may_not_be_raised_past_the_databases_ceiling(name):
    from middleware.settings import ConfigurationError, Settings

    ceiling = getattr(storable.CEILINGS, name)
    assert ceiling >= getattr(storable.StorageLimits(), name), "the database refuses what the default allows"
    assert getattr(Settings.from_env({f"JOBS_{name.upper()}": str(ceiling)}), name) == ceiling
    with pytest.raises(ConfigurationError, match=f"JOBS_{name.upper()} may be {ceiling} at most"):
        Settings.from_env({f"JOBS_{name.upper()}": str(ceiling + 1)})


def test_options_over_what_the_database_stores_are_refused(tenants, nothing_written):
    actor = dramatiq.get_broker().get_actor("test_job")
    owner = {"job_owner": {"user_id": tenants.acme.members[0]}}
    with pytest.raises(
        InvalidArguments, match=r"its options are \d+ bytes of JSON, more than the 1000000 the database stores"
    ) as raised:
        actor.send_with_options(big="x" * 1_000_000, **owner)
    one_line(raised.value)
    with pytest.raises(InvalidArguments, match="its options are nested more than 100 deep") as raised:
        actor.send_with_options(deep=deeply_nested(101)["delay_ms"], **owner)
    one_line(raised.value)


def test_a_long_progress_message_is_stored_cut(stub_broker, tenants):
    from db import transitions
    from tests.helpers import alive

    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    alive("host-a:1:boot/1")
    assert transitions.mark_active(job_id, "host-a:1:boot/1").applied
    assert transitions.record_progress(job_id, 1, 50, "p" * 50_000)
    message = job_row(job_id)["progress_message"]
    assert len(message) == storable.MAX_PROGRESS_MESSAGE_CHARS
    assert message.startswith("ppp") and message.endswith(f"[50000 characters, cut to {len(message)}]")


def deep_result() -> list:
    return deeply_nested(150)["delay_ms"]


def test_a_result_nested_deeper_than_the_database_stores_is_stored_as_a_marker(tenants, stub_broker, stub_worker):
    actor = dramatiq.actor(deep_result, broker=stub_broker, max_retries=0)
    job_id = actor.send_with_options(job_owner={"user_id": tenants.acme.members[0]}).message_id
    stub_broker.join("default", fail_fast=False)
    stub_worker.join()
    job = job_row(job_id)
    assert job["status"] == "completed"
    assert job["result"]["not_stored"] == "nested more than 100 deep, deeper than the database stores"
