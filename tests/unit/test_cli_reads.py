"""`jobctl list`, `show` (and their live forms), `workers` and `stats`, as an operator types them:
the installed entry point, in a subprocess."""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta

import pytest

from db import transitions
from db.connection import database
from jobs import service
from jobs.cli.common import format_time
from tests.helpers import alive, expire_lease, job_row
from tests.support.cli import jobctl
from tests.support.live import Live

WORKER = "host-a:101:boot"
# Nothing listens there: the reads must not need Redis.
NO_REDIS = {"REDIS_URL": "redis://127.0.0.1:1/0"}
NARROW = {"COLUMNS": "80"}


def ok(*args: str, env: dict[str, str] | None = None) -> str:
    done = jobctl(*args, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


def refused(*args: str, env: dict[str, str] | None = None) -> str:
    """The one-line error of a command that must fail with exit code 2."""
    done = jobctl(*args, env=env)
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    return done.stderr.strip()


def send(user: str, **options) -> str:
    return service.send_job("test_job", user_id=user, **options)


def run(job_id: str, worker: str = f"{WORKER}/1") -> None:
    alive(worker)
    assert transitions.mark_active(job_id, worker).applied


def fail(job_id: str, message: str, stack: str = "Traceback (most recent call last):\nValueError: boom") -> None:
    run(job_id)
    assert transitions.mark_failed(job_id, 1, f"{WORKER}/1", transitions.Failure("ValueError", message, stack)).applied


def add_user(admin_db, org_id: str, email: str) -> str:
    with admin_db.cursor() as cursor:
        cursor.execute(
            "INSERT INTO users (organization_id, email, name, role) VALUES (%s, %s, 'Long Name', 'member') RETURNING id",
            (org_id, email),
        )
        return str(cursor.fetchone()[0])


def enqueue(job_id: str, user: str) -> str:
    """A pending job with this id, as a send records it."""
    database.execute_sql(
        "SELECT job_send(%s::uuid, 'test_job', 'default', %s::uuid, NULL, '[]', '{}', '{}', 4, NULL, NULL)",
        (job_id, user),
    )
    return job_id


def more_hint(output: str) -> tuple[str, str] | None:
    found = re.search(r"more remain: repeat with (--before|--after) (\S+)$", output.strip())
    return (found[1], found[2]) if found else None


def listed_ids(output: str) -> list[str]:
    """The short ids of the rows of `jobctl list`, in order."""
    return re.findall(r"^([0-9a-f]{8}) ", output, flags=re.MULTILINE)


# list


def test_list_has_a_header_and_a_row_per_job_newest_first(tenants, stub_broker):
    alice, bob = tenants.acme.members
    first = send(alice)
    second = send(bob, delay_ms=60_000)

    lines = ok("list", "--operator", env=NARROW).splitlines()

    assert lines[0].split() == ["JOB", "OWNER", "TYPE", "STATUS", "TRY", "PROG", "CREATED", "/", "DUE"]
    assert listed_ids("\n".join(lines)) == [second[:8], first[:8]]
    due, created = lines[1], lines[2]
    assert due.split()[:6] == [second[:8], "bob@acme.example", "test_job", "pending", "0/4", "0%"]
    assert due.endswith("due " + format_time(job_row(second)["scheduled_for"]))
    # (The due time takes 4 more columns: the flexible owner column gives them up.)
    assert created.split()[0] == first[:8] and created.split()[1].startswith("alice@acme.exam")
    assert created.split()[2:6] == ["test_job", "pending", "0/4", "0%"]
    assert created.endswith(format_time(job_row(first)["created_at"]))
    assert re.search(r" \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+$", created), "the day, the time and its zone"


def test_list_says_no_jobs_when_there_are_none(tenants):
    assert ok("list", "--operator") == "No jobs.\n"
    assert ok("list", "--as", "alice@acme.example", "--status", "failed") == "No jobs.\n"


def test_list_fits_80_columns_whatever_the_emails_and_errors(tenants, stub_broker, admin_db):
    long_email = "someone.with.a.very.long.name." + "x" * 40 + "@acme.example"
    owner = add_user(admin_db, tenants.acme.id, long_email)
    failed = send(owner)
    fail(failed, "\x1b[31mthe first line of a long error " + "y" * 120 + "\nthe second line")
    send(owner, delay_ms=60_000)
    send(tenants.acme.members[0])

    output = ok("list", "--operator", env=NARROW)

    lines = output.splitlines()
    assert all(len(line) <= 80 for line in lines), "\n".join(line for line in lines if len(line) > 80)
    assert len(listed_ids(output)) == 3
    row = next(n for n, line in enumerate(lines) if line.startswith(failed[:8]))
    assert "someone.with" in lines[row] and "…" in lines[row]
    # The error's first line, under its job, cut at the edge; no escape sequence reaches the terminal.
    assert lines[row + 1].strip().startswith("ValueError: \\x1b[31mthe first line of a long error yyy")
    assert lines[row + 1].endswith("…")
    assert "second line" not in output and "\x1b" not in output


def test_list_pages_with_cursors_and_never_skips_or_repeats(tenants, stub_broker, admin_db):
    alice = tenants.acme.members[0]
    jobs = [send(alice) for _ in range(3)]
    # Three more created at the very same moment: the cursor orders them by id.
    tied = sorted(str(uuid.uuid4()) for _ in range(3))
    with admin_db.cursor() as cursor:
        for job_id in tied:
            cursor.execute(
                "INSERT INTO job_status (job_id, job_type, queue, organization_id, user_id, max_attempts,"
                " created_at, updated_at) VALUES (%s, 'test_job', 'default', %s, %s, 4, %s, %s)",
                (job_id, tenants.acme.id, alice, job_row(jobs[-1])["created_at"], job_row(jobs[-1])["created_at"]),
            )
    newest_first = [*tied[::-1], *jobs[::-1]]
    # jobs[-1] and the tied ones share created_at; the larger ids come first.
    newest_first = sorted(newest_first, key=lambda j: (job_row(j)["created_at"], j), reverse=True)

    seen, hint, pages = [], None, 0
    while True:
        output = ok("list", "--operator", "--limit", "2", *(hint or ()))
        seen += listed_ids(output)
        pages += 1
        hint = more_hint(output)
        if hint is None:
            break
        assert hint[0] == "--before"
        assert f"2 shown, more remain: repeat with --before {hint[1]}" in output
    assert seen == [job[:8] for job in newest_first]
    assert pages == 3

    page = json.loads(ok("list", "--operator", "--limit", "2", "--json"))
    assert [job["job_id"] for job in page["jobs"]] == newest_first[:2]
    # Back towards the newer jobs: the nearest ones first, then the next cursor that way.
    oldest = json.loads(ok("list", "--operator", "--limit", "5", "--json"))["next"]
    newer = ok("list", "--operator", "--limit", "2", "--after", oldest)
    assert listed_ids(newer) == [job[:8] for job in newest_first[2:4]]
    direction, cursor = more_hint(newer)
    assert direction == "--after"
    assert listed_ids(ok("list", "--operator", "--limit", "2", "--after", cursor)) == [
        job[:8] for job in newest_first[0:2]
    ]
    assert json.loads(ok("list", "--operator", "--limit", "6", "--json"))["next"] is None

    assert (
        refused("list", "--operator", "--before", "not-a-cursor")
        == "error: not a cursor of the job list: 'not-a-cursor'"
    )


def test_list_filters_by_type_and_since(tenants, stub_broker):
    admin = tenants.acme.admin
    early = send(admin)
    course = service.send_job("initialize", user_id=admin, args={"course_id": tenants.acme.course})
    late = send(admin)

    assert listed_ids(ok("list", "--operator", "--type", "initialize")) == [course[:8]]
    assert listed_ids(ok("list", "--operator", "--since", "10m")) == [late[:8], course[:8], early[:8]]
    since = job_row(course)["created_at"]
    assert listed_ids(ok("list", "--operator", "--since", since.isoformat())) == [late[:8], course[:8]]
    assert listed_ids(ok("list", "--operator", "--since", (since + timedelta(days=1)).isoformat())) == []
    assert refused("list", "--operator", "--since", "yesterday") == (
        "error: --since takes a duration (10m, 2h, 3d) or an ISO time, not 'yesterday'"
    )


def test_users_and_organizations_that_match_nothing_are_errors(tenants, stub_broker):
    carol = tenants.globex.members[0]
    send(carol)
    unknown = "00000000-0000-4000-8000-000000000000"

    assert refused("list", "--as", "nobody@x.example") == "error: no user nobody@x.example"
    assert refused("list", "--as", unknown) == f"error: no user {unknown}"
    assert refused("list", "--operator", "--user", "nobody@x.example") == "error: no user nobody@x.example"
    assert refused("list", "--operator", "--org", "Nowhere Inc") == "error: no organization Nowhere Inc"
    assert refused("list", "--operator", "--org", unknown) == f"error: no organization {unknown}"
    # A user sees no one of another organization: it is unknown to them.
    assert refused("list", "--as", "alice@acme.example", "--user", "carol@globex.example") == (
        "error: no user carol@globex.example"
    )
    assert refused("list", "--as", "alice@acme.example", "--org", "Globex Academy") == (
        "error: no organization Globex Academy"
    )
    assert refused("show", "ffffffff", "--as", "nobody@x.example") == "error: no user nobody@x.example"

    for org in ("Globex Academy", tenants.globex.id):
        assert len(listed_ids(ok("list", "--operator", "--org", org))) == 1
    assert len(listed_ids(ok("list", "--operator", "--user", "carol@globex.example"))) == 1
    assert ok("list", "--operator", "--user", "carol@globex.example", "--org", "Acme Learning") == "No jobs.\n"


# show


def test_show_prints_arguments_and_results_as_json_with_days_and_emails(tenants, stub_broker):
    job_id = send(tenants.acme.members[0], args={"delay_ms": 5, "should_fail": False})
    run(job_id)
    assert transitions.mark_completed(job_id, 1, f"{WORKER}/1", {"waited_ms": 5, "text": "é"}).applied
    row = job_row(job_id)

    output = ok("show", "--operator", job_id)

    assert re.search(r"^ +arguments  \{\"delay_ms\": 5, \"should_fail\": false\}$", output, re.MULTILINE)
    # (jsonb keeps keys in its own order.)
    assert re.search(r"^ +result  \{\"text\": \"é\", \"waited_ms\": 5\}$", output, re.MULTILINE)
    assert re.search(r"^ +owner  alice@acme.example$", output, re.MULTILINE)
    assert re.search(rf"^ +created  {re.escape(format_time(row['created_at']))}$", output, re.MULTILINE)
    assert re.search(rf"^ +completed  {re.escape(format_time(row['completed_at']))}$", output, re.MULTILINE)
    history = output.split("history:\n")[1].splitlines()
    assert [line.split()[3] for line in history] == ["enqueued", "started", "completed"]
    assert all(re.match(r"  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+  ", line) for line in history)
    assert "by alice@acme.example" in history[0]
    assert "False" not in output and "{'" not in output
    assert json.loads(ok("show", "--operator", job_id, "--json"))["job"]["result"] == {"waited_ms": 5, "text": "é"}


def test_show_gives_operators_the_error_stack_and_users_its_first_line(tenants, stub_broker):
    alice = tenants.acme.members[0]
    job_id = send(alice)
    fail(
        job_id, "it broke\nand said more", stack="Traceback (most recent call last):\n  File 'x'\nValueError: it broke"
    )

    operator = ok("show", "--operator", job_id)
    owner = ok("show", job_id, "--as", "alice@acme.example")

    assert re.search(r"^ +error  ValueError: it broke$", operator, re.MULTILINE)
    assert "error stack:\n  Traceback (most recent call last):\n    File 'x'\n  ValueError: it broke\n" in operator
    assert re.search(r"^ +error  ValueError: it broke$", owner, re.MULTILINE)
    assert "Traceback" not in owner
    assert WORKER not in owner, "the workers' hosts are the operators' business"


def test_show_names_who_cancelled_and_no_internal_queue(tenants, stub_broker):
    admin, alice = tenants.acme.admin, tenants.acme.members[0]
    job_id = send(alice, delay_ms=60_000)
    assert job_row(job_id)["queue"] == "default", "its actor's queue, not the broker's delay queue"
    service.cancel_job(job_id, requested_by=admin, reason="not needed")
    cancelled_at = format_time(job_row(job_id)["cancelled_at"])

    for viewer in (("--operator",), ("--as", "alice@acme.example")):
        output = ok("show", job_id, *viewer)
        assert re.search(rf"^ +cancelled  {re.escape(cancelled_at)} by admin@acme.example$", output, re.MULTILINE)
        assert re.search(r"^ +reason  not needed$", output, re.MULTILINE)
        assert "by admin@acme.example reason=not needed" in output
        assert ".DQ" not in output
        shown = json.loads(ok("show", job_id, "--json", *viewer))
        assert (shown["job"]["queue"], shown["job"]["cancelled_by_email"]) == ("default", "admin@acme.example")
        assert shown["job"]["user_email"] == "alice@acme.example"
        assert [e["actor_email"] for e in shown["events"]] == ["alice@acme.example", "admin@acme.example"]
        assert ".DQ" not in json.dumps(shown)


def test_show_takes_a_unique_beginning_of_the_id(tenants, stub_broker):
    alice, bob = tenants.acme.members
    mine = enqueue("abcdef01-1000-4000-8000-000000000001", alice)
    enqueue("abcdef01-2000-4000-8000-000000000002", bob)
    single = send(alice)

    def shown(*args: str) -> str:
        who = () if "--as" in args else ("--operator",)
        return json.loads(ok("show", *who, *args, "--json"))["job"]["job_id"]

    assert shown(single[:8]) == single
    assert shown(single.upper()) == single
    assert refused("show", "--operator", "abcdef01") == (
        "error: job id abcdef01 is ambiguous: more than one job id begins with it (give more digits)"
    )
    assert shown("abcdef011") == shown("ABCDEF01-1") == mine
    # Alice sees only her own: for her the beginning is unique; not for her organization's admin.
    assert shown("abcdef01", "--as", "alice@acme.example") == mine
    assert "is ambiguous" in refused("show", "abcdef01", "--as", "admin@acme.example")
    assert refused("show", "abcdef01", "--as", "carol@globex.example") == "error: no job with id abcdef01"
    assert refused("show", "--operator", "abcdef0") == (
        "error: not a job id: 'abcdef0' (give the full id, or at least its first 8 hex digits)"
    )
    assert refused("show", "--operator", "0123456789") == "error: no job with id 0123456789"
    assert refused("show", "--operator", "not-hex-at-all") == (
        "error: not a job id: 'not-hex-at-all' (give the full id, or at least its first 8 hex digits)"
    )


# show --follow, list --watch


@pytest.mark.parametrize("viewer", [("--operator",), ("--as", "alice@acme.example")], ids=["operator", "owner"])
def test_follow_prints_new_events_as_they_happen_until_the_job_ends(tenants, stub_broker, viewer):
    job_id = send(tenants.acme.members[0])
    live = Live("show", "--follow", job_id, "--interval", "0.05", *viewer, env=NO_REDIS)
    try:
        live.wait_for_text("enqueued")
        run(job_id)
        started = live.wait_for_text(" started ")
        assert ("on host-a:101:boot/1" in started) == (viewer == ("--operator",))
        assert transitions.record_progress(job_id, 1, 40, "nearly half")
        assert "40%  nearly half" in live.wait_for_text(" progress ")
        assert transitions.mark_completed(job_id, 1, f"{WORKER}/1", {"ok": True}).applied
        live.wait_for_text(" completed ")
        code, stderr = live.finish()
    finally:
        live.close()
    assert (code, stderr) == (0, "")
    history = live.lines[live.lines.index("history:") + 1 :]
    assert [line.split()[3] for line in history] == ["enqueued", "started", "progress", "completed"]

    # A job that has ended already: its history, and the command ends at once.
    assert ok("show", "--follow", job_id, *viewer, env=NO_REDIS).endswith(history[-1] + "\n")


def test_follow_as_json_prints_one_object_a_line(tenants, stub_broker):
    job_id = send(tenants.acme.members[0])
    live = Live("show", "--operator", "--follow", job_id[:8], "--json", "--interval", "0.05", env=NO_REDIS)
    try:
        first = json.loads(live.wait_for_line(lambda line: line.startswith("{"), what="the job"))
        assert [event["event"] for event in first["events"]] == ["enqueued"]
        run(job_id)
        assert json.loads(live.wait_for_text('"started"'))["to_status"] == "active"
        service.cancel_job(job_id, requested_by=tenants.acme.admin)
        cancelled = json.loads(live.wait_for_text('"cancelled"'))
        assert cancelled["actor_email"] == "admin@acme.example"
        code, stderr = live.finish()
    finally:
        live.close()
    assert (code, stderr) == (0, "")


def test_follow_and_watch_end_quietly_on_ctrl_c(tenants, stub_broker):
    job_id = send(tenants.acme.members[0])
    for args, shown in (
        (("show", "--operator", "--follow", job_id), "enqueued"),
        (("list", "--operator", "--watch"), job_id[:8]),
    ):
        live = Live(*args, "--interval", "0.05", env=NO_REDIS)
        try:
            live.wait_for_text(shown)
            live.interrupt()
            code, stderr = live.finish()
        finally:
            live.close()
        assert (code, stderr) == (130, ""), args


def test_watch_redraws_the_list_as_jobs_come_and_change(tenants, stub_broker):
    live = Live("list", "--watch", "--as", "admin@acme.example", "--interval", "0.05", env={**NO_REDIS, **NARROW})
    try:
        live.wait_for_text("No jobs.")
        job_id = send(tenants.acme.members[0])
        send(tenants.globex.members[0])  # another organization's: never shown to this admin
        live.wait_for_line(lambda line: line.startswith(job_id[:8]) and " pending " in line, what="the new job")
        run(job_id)
        live.wait_for_line(lambda line: line.startswith(job_id[:8]) and " active " in line, what="it running")
        live.interrupt()
        code, stderr = live.finish()
    finally:
        live.close()
    assert (code, stderr) == (130, "")
    frames = "\n".join(live.lines).split("jobctl list: every 0.05s")
    assert len(frames) >= 3
    assert all(len(line) <= 80 for line in live.lines)
    assert set(listed_ids("\n".join(live.lines))) == {job_id[:8]}


def test_live_options_are_checked(tenants):
    assert (
        refused("list", "--operator", "--watch", "--json")
        == "error: --watch redraws a table: it does not go with --json"
    )
    assert (
        refused("list", "--operator", "--watch", "--interval", "0")
        == "error: --interval must be a number of seconds above 0, not 0.0"
    )


# workers, stats


def test_workers_lists_processes_with_leases_and_current_jobs(tenants, stub_broker, admin_db):
    with admin_db.cursor() as cursor:
        cursor.execute("TRUNCATE workers")  # those of the tests before
    running = send(tenants.acme.members[0])
    transitions.heartbeat(WORKER, "host-a", 101, lease_ms=60_000, broker_id=None)
    assert transitions.mark_active(running, f"{WORKER}/3").applied
    transitions.heartbeat("host-b:202:boot", "host-b", 202, lease_ms=60_000, broker_id=None)
    transitions.worker_stopped("host-b:202:boot", release=True)
    transitions.heartbeat("host-c:303:boot", "host-c", 303, lease_ms=60_000, broker_id=None)
    expire_lease("host-c:303:boot")
    transitions.heartbeat("host-d:404:boot", "host-d", 404, lease_ms=60_000, broker_id=None)
    with admin_db.cursor() as cursor:
        cursor.execute(
            "UPDATE workers SET heartbeat_at = heartbeat_at - interval '2 hours' WHERE worker_id LIKE 'host-d:%'"
        )

    output = ok("workers", env=NARROW)

    lines = output.splitlines()
    assert lines[0].split() == ["HOST", "PID", "STATE", "STARTED", "HEARTBEAT", "LEASE", "STOPPED", "JOBS"]
    rows = {line.split()[0]: line for line in lines[1:] if line.startswith("host-")}
    assert set(rows) == {"host-a", "host-b", "host-c"}
    assert rows["host-a"].split()[1:3] == ["101", "live"] and rows["host-a"].endswith(" 1")
    assert lines[lines.index(rows["host-a"]) + 1].strip() == f"running {running[:8]}"
    assert rows["host-b"].split()[1:3] == ["202", "stopped"] and " over " in rows["host-b"]
    assert rows["host-c"].split()[1:3] == ["303", "lost"] and rows["host-c"].endswith(" 0")
    assert lines[-1] == "(1 older worker processes not shown: --all)"
    assert all(len(line) <= 80 for line in lines)

    everyone = {w["hostname"]: w for w in json.loads(ok("workers", "--all", "--json"))}
    assert set(everyone) == {"host-a", "host-b", "host-c", "host-d"}
    assert (everyone["host-a"]["jobs"], everyone["host-a"]["state"]) == ([running], "live")
    assert everyone["host-b"]["stopped_at"] is not None


def test_stats_counts_jobs_and_puts_the_broker_beside_the_waiting_rows(tenants, redis_broker):
    alice = tenants.acme.members[0]
    oldest = send(alice)
    send(alice)
    send(alice, delay_ms=600_000)
    finished = send(alice)
    service.send_job("initialize", user_id=tenants.acme.admin, args={"course_id": tenants.acme.course})
    # A consumer takes two messages and acknowledges neither: they are unacked in Redis.
    consumer = redis_broker.consume("default", prefetch=2, timeout=100)
    taken = [next(consumer) for _ in range(2)]
    assert all(taken)
    run(finished)
    assert transitions.mark_completed(finished, 1, f"{WORKER}/1", None).applied

    output = ok("stats", env=NARROW)

    lines = output.splitlines()
    assert lines[0].split() == ["TYPE", "PENDING", "ACTIVE", "RETRYING", "COMPLETED", "FAILED", "CANCELLED", "TOTAL"]
    assert "initialize 1 0 0 0 0 0 1" in " ".join(output.split())
    assert "test_job 3 0 0 1 0 0 4" in " ".join(output.split())
    assert f"oldest waiting job: {oldest[:8]} (test_job, pending)" in output
    assert "not due yet (a delay, a retry's backoff): 1" in output
    queue = next(line for line in lines if line.startswith("default "))
    # 4 waiting rows beside what Redis holds, read here from Redis itself: the consumer took 2
    # (or more: it may prefetch again), the others are queued, 1 is delayed (the completed job's
    # message was never acknowledged: it was completed by hand). On a loaded machine Redis may
    # hold a copy more (a publish that redis-py sent again after a timeout): at least once.
    client, ns = redis_broker.client, redis_broker.namespace
    queued, delayed = client.llen(f"{ns}:default"), client.llen(f"{ns}:default.DQ")
    unacked = sum(client.scard(key) for key in client.scan_iter(match=f"{ns}:__acks__.*.default*"))
    assert unacked >= 2 and delayed == 1 and queued + unacked >= 4
    assert queue.split()[:4] == ["default", "4", "0", str(queued + delayed + unacked)]
    assert queue.endswith(f"({queued} queued, {delayed} delayed, {unacked} unacked)")
    assert all(len(line) <= 80 for line in lines)

    stats = json.loads(ok("stats", "--json"))
    assert stats["jobs"]["test_job"] == {
        "pending": 3,
        "active": 0,
        "retrying": 0,
        "completed": 1,
        "failed": 0,
        "cancelled": 0,
    }
    assert stats["oldest_waiting"]["job_id"] == oldest
    broker = {"queued": queued, "delayed": delayed, "unacked": unacked, "total": queued + delayed + unacked}
    assert stats["queues"] == [{"queue": "default", "waiting": 4, "active": 0, "broker": broker}]
    assert stats["broker_error"] is None


def test_stats_without_redis_still_counts_the_jobs(tenants, stub_broker):
    send(tenants.acme.members[0])
    output = ok("stats", env={"REDIS_URL": "redis://:sekret@127.0.0.1:1/0"})

    assert "test_job 1 0 0 0 0 0 1" in " ".join(output.split())
    queue = next(line for line in output.splitlines() if line.startswith("default "))
    assert queue.split() == ["default", "1", "0", "unreachable"]
    assert "broker unreachable at redis://:***@127.0.0.1:1/0: " in output
    assert "sekret" not in output
    stats = json.loads(ok("stats", "--json", env=NO_REDIS))
    assert stats["queues"][0]["broker"] is None and "unreachable" in stats["broker_error"]
