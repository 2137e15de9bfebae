"""What each audience sees, and nothing more: a tenant (a member or an admin of an organization)
gets a job's error type and message, never the server's stack nor the workers' names; stored
text never reaches a terminal as control characters; and no identity is ever taken for the
operators' cross-tenant view."""

from __future__ import annotations

import json
import re

import pytest

from db import transitions
from db.errors import UnknownUser
from jobs import service
from tests.helpers import alive
from tests.support.cli import jobctl

WORKER = "secret-host.internal:4242:boot"
STACK = 'Traceback (most recent call last):\n  File "/srv/app/secret/tasks.py", line 7\nValueError: boom'
OPERATORS_ONLY = {"error_stack", "worker_id", "worker_process"}
# Text a user stores (here a cancel reason) that would forge a line and clear an operator's screen.
FORGED = "ok\n2026-01-01 00:00:00 forged line\x1b[2J"


def ok(*args: str) -> str:
    done = jobctl(*args)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


def refused(*args: str) -> str:
    """The one-line error of a command that must fail with exit code 2."""
    done = jobctl(*args)
    assert (done.returncode, done.stdout) == (2, ""), (done.returncode, done.stdout, done.stderr)
    assert done.stderr.count("\n") == 1, done.stderr
    return done.stderr.strip()


def failed_job(admin_db, user: str) -> str:
    """A job that failed with a stack, on a worker, after a lost delivery of an earlier one."""
    job_id = service.send_job("test_job", user_id=user)
    alive(f"{WORKER}/1")
    assert transitions.mark_active(job_id, f"{WORKER}/1").applied
    failure = transitions.Failure("ValueError", "boom", STACK)
    assert transitions.mark_failed(job_id, 1, f"{WORKER}/1", failure).applied
    with admin_db.cursor() as cursor:
        # As reconcile records a worker lost while it ran the job (0009_leases.sql).
        cursor.execute(
            "INSERT INTO job_events (job_id, event, attempt, details) VALUES (%s, 'lost', 1, %s)",
            (job_id, json.dumps({"lost_worker": f"{WORKER}/1", "lost_deliveries": 1})),
        )
    return job_id


def leaks(text: str) -> list[str]:
    return [secret for secret in ("secret-host", "/srv/app/secret", "Traceback") if secret in text]


def tenant_fields(job: dict) -> None:
    assert OPERATORS_ONLY.isdisjoint(job), sorted(OPERATORS_ONLY & job.keys())
    assert (job["error_type"], job["error_message"]) == ("ValueError", "boom")


# What a tenant sees: the service layer


@pytest.mark.parametrize("who", ["member", "admin"])
def test_service_get_job_gives_a_tenant_the_error_but_not_the_stack_nor_the_worker(tenants, stub_broker, admin_db, who):
    job_id = failed_job(admin_db, tenants.acme.members[0])
    viewer = tenants.acme.members[0] if who == "member" else tenants.acme.admin

    tenant_fields(service.get_job(job_id, as_user=viewer))


def test_service_list_jobs_gives_a_tenant_neither_stack_nor_worker(tenants, stub_broker, admin_db):
    failed_job(admin_db, tenants.acme.members[0])

    for viewer in (tenants.acme.members[0], tenants.acme.admin):
        [job] = service.list_jobs(as_user=viewer)
        tenant_fields(job)


def test_service_show_job_and_history_give_a_tenant_no_worker(tenants, stub_broker, admin_db):
    job_id = failed_job(admin_db, tenants.acme.members[0])

    job, events = service.show_job(job_id, as_user=tenants.acme.members[0])

    tenant_fields(job)
    history = service.job_history(job_id, as_user=tenants.acme.admin)
    for event in [*events, *history]:
        assert "worker_id" not in event and "lost_worker" not in event["details"], event
    assert [event["event"] for event in events] == [event["event"] for event in history]
    assert not leaks(json.dumps([*events, *history], default=str))


# What a tenant sees: the command line


@pytest.mark.parametrize("json_output", [False, True])
def test_show_as_a_member_prints_neither_stack_nor_worker(tenants, stub_broker, admin_db, json_output):
    job_id = failed_job(admin_db, tenants.acme.members[0])

    output = ok("show", job_id, "--as", "alice@acme.example", *(["--json"] if json_output else []))

    assert "boom" in output
    assert not leaks(output), output
    if json_output:
        document = json.loads(output)
        tenant_fields(document["job"])
        assert all("worker_id" not in e and "lost_worker" not in e["details"] for e in document["events"])


@pytest.mark.parametrize("json_output", [False, True])
def test_list_as_a_member_prints_neither_stack_nor_worker(tenants, stub_broker, admin_db, json_output):
    failed_job(admin_db, tenants.acme.members[0])

    output = ok("list", "--as", "alice@acme.example", *(["--json"] if json_output else []))

    assert "boom" in output
    assert not leaks(output), output
    if json_output:
        tenant_fields(json.loads(output)["jobs"][0])


def test_an_operator_sees_the_stack_and_the_worker(tenants, stub_broker, admin_db):
    job_id = failed_job(admin_db, tenants.acme.members[0])

    output = ok("show", job_id, "--operator")

    assert "secret-host" in output and "/srv/app/secret/tasks.py" in output
    document = json.loads(ok("show", job_id, "--operator", "--json"))
    assert document["job"]["error_stack"] == STACK
    assert document["job"]["worker_id"] == f"{WORKER}/1"


# Control characters in human output


def cancelled_with_forged_reason(tenants) -> str:
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])
    service.cancel_job(job_id, requested_by=tenants.acme.members[0], reason=FORGED)
    return job_id


def no_control_characters(output: str) -> None:
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", output), repr(output)
    assert not re.search(r"^2026-01-01", output, re.MULTILINE), "a stored newline began a line of its own"


@pytest.mark.parametrize("who", [("--as", "alice@acme.example"), ("--operator",)])
def test_show_prints_a_forged_reason_visibly_on_its_own_line(tenants, stub_broker, who):
    job_id = cancelled_with_forged_reason(tenants)

    output = ok("show", job_id, *who)

    no_control_characters(output)
    reason = next(line for line in output.splitlines() if line.strip().startswith("reason "))
    assert "forged line" in reason and "\\n" in reason and "\\x1b[2J" in reason, reason
    history = next(line for line in output.splitlines() if "-> cancelled" in line)
    assert "forged line" in history and "\\x1b[2J" in history, history


def test_list_prints_stored_text_without_control_characters(tenants, stub_broker, admin_db):
    owner = tenants.acme.members[0]
    job_id = service.send_job("test_job", user_id=owner)
    alive(f"{WORKER}/1")
    assert transitions.mark_active(job_id, f"{WORKER}/1").applied
    failure = transitions.Failure("ValueError", "\x1b[2J\rforged\x07", STACK)
    assert transitions.mark_failed(job_id, 1, f"{WORKER}/1", failure).applied
    with admin_db.cursor() as cursor:
        cursor.execute("UPDATE users SET email = %s WHERE id = %s", ("ev\x1b[31mil@acme.example", owner))

    for who in (("--as", tenants.acme.admin), ("--operator",)):
        output = ok("list", *who)
        no_control_characters(output)
        assert "ev\\x1b[31mil@acme" in output and "\\x1b[2J\\rforged\\x07" in output, output


def test_workers_print_a_hostname_without_control_characters(tenants, admin_db):
    alive(f"{WORKER}/1")
    with admin_db.cursor() as cursor:
        cursor.execute("UPDATE workers SET hostname = %s", ("host\x1b[2J\nforged",))

    output = ok("workers")

    no_control_characters(output)
    assert output.splitlines()[1].startswith("host\\x1b[2J\\n"), output


# Fail closed: no identity is the operators' view


@pytest.mark.parametrize("blank", ["", "  "])
def test_an_empty_identity_is_an_error_for_every_command(tenants, stub_broker, blank):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])

    for command in (
        ("show", job_id, "--as", blank),
        ("list", "--as", blank),
        ("cancel", job_id, "--as", blank),
        ("retry", job_id, "--as", blank),
        ("send", "test_job", "--as", blank),
    ):
        assert refused(*command) == "error: --as needs a user's email or id, not an empty value", command
    assert service.get_job(job_id, as_user=tenants.acme.members[0])["status"] == "pending"


def test_show_and_list_need_a_user_or_operator(tenants, stub_broker):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])

    for command in (("show", job_id), ("list",)):
        done = jobctl(*command)
        assert (done.returncode, done.stdout) == (2, ""), done
        assert "--as" in done.stderr and "--operator" in done.stderr, done.stderr
    done = jobctl("show", job_id, "--as", "alice@acme.example", "--operator")
    assert done.returncode == 2 and "not allowed with" in done.stderr, done.stderr


@pytest.mark.parametrize("nobody", ["", "  ", None])
def test_the_service_refuses_an_empty_identity(tenants, stub_broker, nobody):
    job_id = service.send_job("test_job", user_id=tenants.acme.members[0])

    for read in (
        lambda: service.get_job(job_id, as_user=nobody),
        lambda: service.list_jobs(as_user=nobody),
        lambda: service.show_job(job_id, as_user=nobody),
        lambda: service.job_history(job_id, as_user=nobody),
    ):
        with pytest.raises(UnknownUser):
            read()


def test_a_lost_worker_is_not_named_to_a_tenant(tenants, stub_broker):
    from db.connection import database
    from tests.helpers import expire_lease, worker_limits

    owner = tenants.acme.members[0]
    job_id = service.send_job("test_job", user_id=owner)
    alive("secret-host:4242:boot/1")
    assert transitions.mark_active(job_id, "secret-host:4242:boot/1").applied
    expire_lease("secret-host:4242:boot/1")
    worker_limits(max_deliveries=1)  # its only delivery: WorkerLost
    database.execute_sql("SELECT * FROM job_reap(NULL)").fetchall()

    job, history = service.show_job(job_id, as_user=owner)
    assert job["error_type"] == "WorkerLost" and "secret-host" not in json.dumps([job, history], default=str)
    assert "secret-host" not in ok("show", job_id, "--as", "alice@acme.example")
    assert "secret-host" in ok("show", job_id, "--operator"), "the operators' view names it"
