"""Server-Sent Events against the real server: a job followed to its end as it runs, a stream of
every job resumed with Last-Event-ID losing nothing, and each audience's boundary."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tests.api.conftest import OPERATOR, problem, send


@dataclass
class Sse:
    kind: str
    data: dict
    id: str | None


@contextmanager
def stream(client, path: str, last_event_id: str | None = None, timeout: float = 30.0) -> Iterator[Iterator[Sse]]:
    """The stream's messages, parsed, as they arrive (a keepalive comment is not one); fails once
    `timeout` has passed (the server says something every second: tests.support.server)."""
    deadline = time.monotonic() + timeout
    headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
    with client.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")

        def messages() -> Iterator[Sse]:
            fields: dict[str, str] = {}
            for line in response.iter_lines():
                if time.monotonic() > deadline:
                    raise AssertionError(f"{path}: no more messages within {timeout}s")
                if line:
                    name, _, value = line.partition(": ")
                    fields[name] = value
                    continue
                if "event" in fields:
                    yield Sse(fields["event"], json.loads(fields["data"]), fields.get("id"))
                fields = {}

        yield messages()


def take(messages: Iterator[Sse], count: int, kind: str = "event") -> list[Sse]:
    """The next `count` messages of `kind` (others are skipped)."""
    taken = []
    for message in messages:
        if message.kind == kind:
            taken.append(message)
            if len(taken) == count:
                return taken
    raise AssertionError(f"the stream ended after {len(taken)} of {count} {kind} messages")


def test_a_job_is_followed_to_its_end_without_asking_again(workers, client_as, tenants, admin_db):
    workers()
    alice = client_as(tenants.acme.members[0])
    # It runs until it is cancelled: each step below waits for the stream, never for the clock.
    job_id = send(alice, args={"delay_ms": 600_000, "check_cancellation": True})
    # In capitals: the same job. (That its notifications, not only the keepalive, wake this stream
    # is web.api.streams' normalizing the id; this test shows the stream works, not which woke it.)
    with stream(alice, f"/api/jobs/{job_id.upper()}/stream") as messages:
        received = [next(messages)]
        assert received[0].kind == "job" and received[0].data["job_id"] == job_id
        received += until(messages, lambda m: m.kind == "event" and m.data["to_status"] == "active")
        with admin_db.cursor() as cursor:  # a progress report, as the job's worker writes it
            cursor.execute("SELECT job_progress(%s, 1, 42, 'half way')", (job_id,))
        received += until(messages, lambda m: m.kind == "job" and m.data["progress"] == 42)
        assert received[-1].data["progress_message"] == "half way"
        assert alice.post(f"/api/jobs/{job_id}/cancel", json={"reason": "seen enough"}).status_code == 200
        received += list(messages)  # the server ends the stream when the job ends
    assert received[-1].kind == "end"
    history = [m.data for m in received if m.kind == "event"]
    assert [e["to_status"] for e in history if e["to_status"]] == ["pending", "active", "cancelled"]
    assert history[-1]["details"]["reason"] == "seen enough"
    assert len({m.id for m in received if m.kind == "event"}) == len(history), "every event has its own position"
    for event in history:
        assert "worker_id" not in event, "a tenant doesn't read the workers' names"


def until(messages: Iterator[Sse], last) -> list[Sse]:
    """The messages up to the first for which `last` is true, that one included."""
    taken = []
    for message in messages:
        taken.append(message)
        if last(message):
            return taken
    raise AssertionError(f"the stream ended before the message waited for; it sent {taken}")


def test_a_stream_resumed_with_last_event_id_loses_nothing_and_repeats_nothing(client_as, tenants):
    admin, alice = client_as(tenants.acme.admin), client_as(tenants.acme.members[0])
    with stream(admin, "/api/stream") as messages:
        first = [send(alice) for _ in range(3)]
        received = take(messages, 3)
    assert [m.data["job_id"] for m in received] == first
    # Gone after the first: the other two, and what is sent meanwhile, come on the next connection.
    meanwhile = [send(alice) for _ in range(2)]
    with stream(admin, "/api/stream", last_event_id=received[0].id) as messages:
        resumed = take(messages, 4)
    assert [m.data["job_id"] for m in resumed] == first[1:] + meanwhile
    assert [m.data["event"] for m in resumed] == ["enqueued"] * 4


def test_a_member_hears_only_of_their_own_jobs(client_as, tenants):
    alice, bob = client_as(tenants.acme.members[0]), client_as(tenants.acme.members[1])
    elsewhere = client_as(tenants.globex.members[0])
    operator = client_as(OPERATOR)
    with stream(alice, "/api/stream") as alices, stream(operator, "/api/stream") as everyones:
        others = [send(bob), send(elsewhere)]
        own = send(alice)
        # Committed after the others: had they reached Alice, they would come first.
        assert [m.data["job_id"] for m in take(alices, 1)] == [own]
        assert [m.data["job_id"] for m in take(everyones, 3)] == [*others, own]
    for job_id in others:
        problem(alice.get(f"/api/jobs/{job_id}/stream"), 404)
    problem(alice.get("/api/jobs/not-a-job/stream"), 404)


def test_a_position_is_good_only_on_its_own_stream(client_as, tenants):
    alice, bob = client_as(tenants.acme.members[0]), client_as(tenants.acme.members[1])
    with stream(alice, "/api/stream") as messages:
        send(alice)
        (received,) = take(messages, 1)
    assert "not a position of this stream" in problem(
        bob.get("/api/stream", headers={"Last-Event-ID": received.id}), 400
    )
    for forged in ("", "x" * 40, received.id[:-2] + "AA", "a" * 20_000):
        problem(alice.get("/api/stream", headers={"Last-Event-ID": forged}), 400)


def test_a_stream_needs_a_token(api):
    problem(api.get("/api/stream"), 401)
