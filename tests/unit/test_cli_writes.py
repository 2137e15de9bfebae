"""`jobctl` send, cancel and retry, run as an operator types them."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess

import psycopg2
import pytest

from jobs import service
from tests.helpers import count, events, job_row, statuses
from tests.support.cli import JOBCTL, jobctl


def test_the_command_is_jobctl_and_only_jobctl():
    scripts = {
        entry.name
        for entry in importlib.metadata.entry_points(group="console_scripts")
        if entry.value.startswith("jobs.")
    }
    assert scripts == {"jobctl"}, "`jobs` is a shell builtin: no entry point may take that name"
    assert jobctl("--help").stdout.startswith("usage: jobctl")


def test_send_help_lists_the_job_types_and_their_arguments():
    shown = jobctl("send", "--help")
    assert shown.returncode == 0, shown.stderr
    assert "  initialize  Creates a course's starting modules" in shown.stdout
    assert "      course_id: str (required)" in shown.stdout
    assert "      delay_ms: int (default 0)" in shown.stdout


def test_send_with_a_key_twice_prints_the_first_jobs_id(stub_broker, tenants):
    first = jobctl("send", "test_job", "--as", "alice@acme.example", "--key", "import-42")
    again = jobctl("send", "test_job", "--as", "alice@acme.example", "--key", "import-42", "--args", '{"delay_ms": 5}')
    assert (first.returncode, again.returncode) == (0, 0), first.stderr + again.stderr
    assert again.stdout == first.stdout and count("job_status") == 1
    batch = jobctl("send", "test_job", "--as", "alice@acme.example", "--key", "nightly", "--count", "3", "--json")
    repeated = jobctl("send", "test_job", "--as", "alice@acme.example", "--key", "nightly", "--count", "3", "--json")
    assert json.loads(batch.stdout) == json.loads(repeated.stdout) and count("job_status") == 4
    assert {job_row(i)["idempotency_key"] for i in json.loads(batch.stdout)} == {"nightly/1", "nightly/2", "nightly/3"}


def test_send_with_redis_down_says_on_one_line_that_the_job_is_recorded(tenants):
    sent = jobctl("send", "test_job", "--as", "bob@acme.example", env={"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert sent.returncode == 1 and sent.stdout == ""
    (line,) = sent.stderr.splitlines()
    (job_id,) = [row[0] for row in _job_ids()]
    assert line.startswith(f"error: job {job_id} is recorded but the broker is unreachable")
    assert line.endswith("it will be sent when the broker is back")
    assert statuses([job_id]) == {job_id: "pending"}


def _job_ids():
    from db.connection import database

    return database.execute_sql("SELECT job_id::text FROM job_status").fetchall()


def test_an_operator_cancels_without_an_org_admins_identity(stub_broker, tenants):
    job_id = service.send_job("test_job", user_id=tenants.globex.members[0])
    cancelled = jobctl("cancel", job_id, "--operator", "dana-oncall", "--reason", "runaway")
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout == f"job {job_id} cancelled\n"
    row = job_row(job_id)
    assert (row["status"], row["cancelled_by"], row["cancel_reason"]) == ("cancelled", None, "runaway")
    from db.connection import database

    event, actor, details = database.execute_sql(
        "SELECT event, actor_user_id, details FROM job_events WHERE job_id = %s::uuid ORDER BY id DESC LIMIT 1",
        (job_id,),
    ).fetchone()
    assert (event, actor, details) == ("cancelled", None, {"reason": "runaway", "operator": "dana-oncall"})
    assert " by operator dana-oncall" in jobctl("show", job_id).stdout


def test_neither_workers_nor_users_may_cancel_as_an_operator(stub_broker, tenants, settings):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    conn = psycopg2.connect(settings.database_url)  # the workers' and services' role
    conn.autocommit = True
    try:
        for call in ("job_cancel_by_operator(%s, 'mallory', NULL)", "job_cancel_by(%s, NULL, 'mallory', NULL)"):
            with pytest.raises(psycopg2.errors.InsufficientPrivilege), conn.cursor() as cursor:
                cursor.execute(f"SELECT * FROM {call}", (job_id,))
    finally:
        conn.close()
    assert statuses([job_id]) == {job_id: "pending"}


def test_cancel_needs_exactly_one_of_as_and_operator(tenants):
    both = jobctl("cancel", "x", "--as", "alice@acme.example", "--operator", "dana")
    neither = jobctl("cancel", "x")
    assert both.returncode == neither.returncode == 2
    assert (
        "not allowed with argument" in both.stderr
        and "one of the arguments --as --operator is required" in neither.stderr
    )


def test_retry_through_the_command_line(stub_broker, tenants):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    service.cancel_job(job_id, tenants.acme.admin)

    refused = jobctl("retry", job_id, "--as", "bob@acme.example")
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr == (
        f"error: user bob@acme.example may not retry job {job_id}: only its owner or an admin of its organization may\n"
    )
    retried = jobctl("retry", job_id, "--as", "admin@acme.example")
    assert retried.returncode == 0, retried.stderr
    new_id = retried.stdout.strip()
    assert str(job_row(new_id)["retry_of"]) == job_id
    again = jobctl("retry", job_id, "--as", "alice@acme.example")
    assert again.stdout == f"job {job_id} was already retried as {new_id}: nothing sent\n"
    assert [e[0] for e in events(job_id)][-2:] == ["retry_refused", "retried"]
    # Linked both ways, as show prints them.
    assert f"retried as  {new_id}" in jobctl("show", job_id).stdout
    assert f"retry of  {job_id}" in jobctl("show", new_id, "--as", "alice@acme.example").stdout


def test_piping_into_head_ends_quietly(stub_broker, tenants):
    # More than a pipe's buffer of ids, so that jobctl is still writing when head leaves.
    piped = subprocess.run(
        f"'{JOBCTL}' send test_job --as carol@globex.example --count 3000 | head -n 1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert piped.stderr == "" and len(piped.stdout.splitlines()) == 1


def test_an_operator_without_a_name_is_recorded_by_login_name(stub_broker, tenants):
    job_id = service.send_job("test_job", user_id=tenants.acme.admin)
    cancelled = jobctl("cancel", job_id, "--operator", env={"LOGNAME": "zed-oncall"})
    assert cancelled.returncode == 0, cancelled.stderr
    from db.connection import database

    (details,) = database.execute_sql(
        "SELECT details FROM job_events WHERE job_id = %s::uuid AND event = 'cancelled'", (job_id,)
    ).fetchone()
    assert details == {"operator": "zed-oncall"}


def test_cancel_and_retry_take_the_start_of_an_id_as_list_prints_it(stub_broker, tenants):
    job_id = service.send_job("test_job", user_id=tenants.globex.members[0])
    cancelled = jobctl("cancel", job_id[:8], "--as", "carol@globex.example")
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout == f"job {job_id} cancelled\n"
    retried = jobctl("retry", job_id[:8], "--as", "carol@globex.example")
    assert retried.returncode == 0, retried.stderr
    assert str(job_row(retried.stdout.strip())["retry_of"]) == job_id
    hidden = jobctl("cancel", job_id[:8], "--as", "admin@acme.example")
    assert (hidden.returncode, hidden.stderr) == (2, f"error: no job with id {job_id[:8]}\n")
