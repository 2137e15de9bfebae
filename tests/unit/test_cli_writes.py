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

NO_REDIS = {"REDIS_URL": "redis://127.0.0.1:1/0"}


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
    sent = jobctl("send", "test_job", "--as", "bob@acme.example", env=NO_REDIS)
    (job_id,) = [row[0] for row in _job_ids()]
    assert sent.returncode == 1 and sent.stdout == f"{job_id}\n", "the id, as any send prints it"
    (line,) = sent.stderr.splitlines()
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
    assert " by operator dana-oncall" in jobctl("show", "--operator", job_id).stdout


def test_neither_workers_nor_users_may_cancel_as_an_operator(stub_broker, tenants, settings):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    conn = psycopg2.connect(settings.database_url)  # the services' role, which has the workers' rights
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
    assert len(both.stderr.splitlines()) == len(neither.stderr.splitlines()) == 1, "bad usage is one line too"


def test_a_long_bad_command_is_echoed_as_an_excerpt():
    typed = jobctl("x" * 100_000)
    assert typed.returncode == 2 and len(typed.stderr.splitlines()) == 1 and len(typed.stderr) < 500


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
    assert f"retried as  {new_id}" in jobctl("show", "--operator", job_id).stdout
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


def test_a_batch_that_half_fails_prints_every_recorded_id_then_one_error_line(tenants):
    sent = jobctl("send", "test_job", "--as", "bob@acme.example", "--count", "3", env=NO_REDIS)
    assert sent.returncode == 1
    assert sorted(sent.stdout.split()) == sorted(row[0] for row in _job_ids()) and count("job_status") == 3
    (line,) = sent.stderr.splitlines()
    assert "3 jobs" in line and line.endswith("they will be sent when the broker is back")


def test_a_member_acting_on_a_colleagues_job_by_its_start_is_refused_and_recorded(stub_broker, tenants):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    refused = jobctl("cancel", job_id[:8], "--as", "bob@acme.example")
    assert refused.returncode == 2
    assert refused.stderr.startswith(f"error: user bob@acme.example may not cancel job {job_id}")
    assert events(job_id)[-1][0] == "cancel_refused" and statuses([job_id]) == {job_id: "pending"}


def test_a_key_names_one_job_of_one_type(stub_broker, tenants):
    first = jobctl("send", "test_job", "--as", "alice@acme.example", "--key", "k1")
    other = jobctl(
        "send",
        "initialize",
        "--as",
        "alice@acme.example",
        "--key",
        "k1",
        "--args",
        f'{{"course_id": "{tenants.acme.course}"}}',
    )
    assert first.returncode == 0 and other.returncode == 2 and other.stdout == ""
    assert (
        other.stderr
        == f"error: the key 'k1' was given to job {first.stdout.strip()}, of type test_job: a key names one job\n"
    )
    assert count("job_status") == 1


def test_errors_name_the_user_as_typed(stub_broker, tenants):
    sent = jobctl(
        "send", "initialize", "--as", "alice@acme.example", "--args", f'{{"course_id": "{tenants.globex.course}"}}'
    )
    assert (sent.returncode, sent.stderr) == (
        2,
        f"error: course {tenants.globex.course} does not exist in the organization of user alice@acme.example\n",
    )


def test_a_key_too_long_for_its_count_is_refused_before_anything_is_sent(tenants):
    refused = jobctl("send", "test_job", "--as", "alice@acme.example", "--key", "k" * 198, "--count", "10")
    assert refused.returncode == 2 and "--key is too long for --count 10" in refused.stderr
    assert count("job_status") == 0


def test_cancelling_a_running_job_with_redis_down_says_its_worker_was_not_told(stub_broker, tenants):
    from tests.helpers import alive

    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    alive("host:1:boot/1")
    from db import transitions

    assert transitions.mark_active(job_id, "host:1:boot/1").applied
    cancelled = jobctl("cancel", job_id, "--as", "alice@acme.example", env=NO_REDIS)
    assert (cancelled.returncode, cancelled.stderr) == (0, "")
    assert cancelled.stdout.startswith(
        f"job {job_id} cancelled; it is running, and its worker could not be told to stop"
    )
    assert statuses([job_id]) == {job_id: "cancelled"}


def test_retry_with_redis_down_says_the_retry_is_recorded(stub_broker, tenants):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    service.cancel_job(job_id, tenants.acme.admin)
    retried = jobctl("retry", job_id, "--as", "alice@acme.example", env=NO_REDIS)
    assert retried.returncode == 1 and retried.stdout == ""
    (line,) = retried.stderr.splitlines()
    (new_id,) = [row[0] for row in _job_ids() if row[0] != job_id]
    assert line.startswith(f"error: the retry of job {job_id}: job {new_id} is recorded but the broker is unreachable")
    assert str(job_row(new_id)["retry_of"]) == job_id and statuses([new_id]) == {new_id: "pending"}


@pytest.mark.parametrize(
    ("url", "code", "says"),
    [
        ("postgresql//postgres:s3cretpw@127.0.0.1/x", 2, "invalid"),
        ("postgresql://postgres:s3cretpw@127.0.0.1:1/x", 1, "database unreachable"),
    ],
)
def test_an_operators_cancel_with_a_bad_admin_url_is_one_masked_line(stub_broker, tenants, url, code, says):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    cancelled = jobctl("cancel", job_id, "--operator", "dana", env={"ADMIN_DATABASE_URL": url})
    assert cancelled.returncode == code and len(cancelled.stderr.splitlines()) == 1, cancelled.stderr
    assert says in cancelled.stderr and "s3cretpw" not in cancelled.stderr
    assert statuses([job_id]) == {job_id: "pending"}


def test_a_database_without_the_schema_says_to_migrate(settings):
    url = settings.database_url.rsplit("/", 1)[0] + "/postgres"
    listed = jobctl("list", "--operator", env={"DATABASE_URL": url})
    assert listed.returncode == 1
    assert listed.stderr.startswith("error: the database's schema is not this release's (run `jobctl migrate`)")
    assert len(listed.stderr.splitlines()) == 1


def test_list_of_an_unknown_type_is_an_error(tenants):
    listed = jobctl("list", "--operator", "--type", "nope")
    assert (listed.returncode, listed.stderr) == (2, "error: unknown job type 'nope' (known: initialize, test_job)\n")


def test_list_piped_into_head_ends_quietly(stub_broker, tenants):
    service.send_jobs("test_job", [{}] * 1000, user_id=tenants.acme.admin)
    piped = subprocess.run(
        f"'{JOBCTL}' list --operator --limit 1000 | head -n 1", shell=True, capture_output=True, text=True, timeout=60
    )
    assert piped.stderr == "" and piped.stdout.startswith("JOB ")


def test_users_json_holds_no_stack_and_no_host_as_their_text_does(stub_broker, tenants):
    from db import transitions
    from tests.helpers import alive

    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    alive("host:1:boot/1")
    assert transitions.mark_active(job_id, "host:1:boot/1").applied
    failure = transitions.Failure("ValueError", "boom", 'File "/srv/app/secret_path.py", line 1')
    assert transitions.mark_failed(job_id, 1, "host:1:boot/1", failure).applied

    as_user = jobctl("show", job_id, "--as", "alice@acme.example", "--json")
    as_operator = jobctl("show", "--operator", job_id, "--json")
    assert "secret_path" not in as_user.stdout and "host:1" not in as_user.stdout
    assert "secret_path" in as_operator.stdout and "host:1" in as_operator.stdout
    listed = jobctl("list", "--as", "alice@acme.example", "--json")
    assert "secret_path" not in listed.stdout and "host:1" not in listed.stdout
