"""/api/jobs without a worker: sends (one, a batch, idempotent), the list's filters and keyset
pages, a job and its history, cancel and retry of waiting jobs; and every refusal in one line,
with nothing written."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from db.storable import StorageLimits
from tests.api.conftest import problem, send
from tests.helpers import count, job_row

TENANT_HIDDEN = {"error_stack", "worker_id", "worker_process"}


def test_a_member_sends_a_job_and_reads_it_with_its_history(client_as, tenants):
    alice = client_as(tenants.acme.members[0])
    job_id = send(alice, args={"delay_ms": 5}, delay_ms=60_000)
    response = alice.get(f"/api/jobs/{job_id}")
    assert response.status_code == 200, response.text
    body = response.json()
    job = body["job"]
    assert (job["job_id"], job["status"], job["user_id"]) == (job_id, "pending", tenants.acme.members[0])
    assert job["kwargs"] == {"delay_ms": 5} and job["queue"] == "default"  # not Dramatiq's delay queue
    assert job["retried_as"] is None and job["retry_of"] is None
    assert not TENANT_HIDDEN & job.keys()
    assert [(event["event"], event["to_status"]) for event in body["events"]] == [("enqueued", "pending")]
    assert job_row(job_id)["scheduled_for"] is not None


def test_a_batch_is_sent_whole_with_its_keys(client_as, tenants):
    alice = client_as(tenants.acme.members[0])
    batch = {"type": "test_job", "jobs": [{"delay_ms": 1}, None, {}], "keys": ["k1", None, "k3"]}
    response = alice.post("/api/jobs", json=batch)
    assert response.status_code == 201, response.text
    ids = response.json()["job_ids"]
    assert len(set(ids)) == 3
    assert [job_row(job_id)["idempotency_key"] for job_id in ids] == ["k1", None, "k3"]
    # Sent again: the keyed jobs are the first ones; the unkeyed one is a new job.
    again = alice.post("/api/jobs", json=batch).json()["job_ids"]
    assert again[0] == ids[0] and again[2] == ids[2] and again[1] not in ids
    assert count("job_status") == 4


def test_a_key_sent_again_returns_the_first_job(client_as, tenants):
    alice = client_as(tenants.acme.members[0])
    first = send(alice, key="course-7-init")
    assert send(alice, key="course-7-init") == first
    assert count("job_status") == 1


def test_a_key_given_to_a_job_of_another_type_is_a_conflict(client_as, tenants):
    alice = client_as(tenants.acme.members[0])
    send(alice, key="k")
    course = {"course_id": tenants.acme.course}
    assert "a key names one job" in problem(
        alice.post("/api/jobs", json={"type": "initialize", "args": course, "key": "k"}), 409
    )
    assert count("job_status") == 1


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"type": "nope"}, 422, "unknown job type 'nope'"),
        ({"type": "test_job", "args": {"zzz": 1}}, 422, "unexpected keyword argument 'zzz'"),
        ({"type": "test_job", "args": {"delay_ms": "1"}}, 422, "invalid arguments for test_job"),
        ({"type": "test_job", "args": [1, 2]}, 422, "body.args"),
        ({"type": "test_job", "delay_ms": "5"}, 422, "body.delay_ms: Input should be a valid integer"),
        ({"type": "test_job", "delay_ms": -1}, 422, "invalid arguments for test_job"),
        ({"type": "test_job", "delay_ms": StorageLimits.max_delay_ms + 1}, 422, "JOBS_MAX_DELAY_MS"),
        ({"type": "test_job", "key": ""}, 422, "a key must be a string of 1 to 200 characters"),
        ({"type": "test_job", "key": "k" * 201}, 422, "a key must be a string of 1 to 200 characters"),
        ({"type": "test_job", "bogus": 1}, 422, "body.bogus: Extra inputs are not permitted"),
        ({"args": {}}, 422, "body.type: Field required"),
        ({"type": "test_job", "args": {"delay_ms": 1, "nul": "\x00"}}, 422, "invalid arguments"),
        ({"type": "test_job", "jobs": []}, 422, "body.jobs"),
        ({"type": "test_job", "jobs": [{}] * 1001}, 422, "body.jobs: List should have at most 1000 items"),
        ({"type": "test_job", "jobs": [{}, {"delay_ms": "x"}]}, 422, "delay_ms must be int"),
        ({"type": "test_job", "jobs": [{}, {}], "keys": ["a"]}, 422, "1 keys were given for 2 jobs"),
        ({"type": "test_job", "jobs": [{}, {}], "keys": ["a", "a"]}, 422, "invalid arguments for test_job"),
        ({"type": "initialize", "args": {"course_id": "0b7c1f3e-9d4a-4e2b-8f61-3a5c7d9e1b20"}}, 422, "does not exist"),
    ],
    ids=lambda value: None if isinstance(value, (dict, int)) else value[:30],
)
def test_a_send_that_cannot_be_is_refused_and_writes_nothing(client_as, tenants, body, status, says):
    response = client_as(tenants.acme.members[0]).post("/api/jobs", json=body)
    assert says in problem(response, status)
    assert count("job_status") == 0


def test_a_course_of_another_organization_is_refused(client_as, tenants):
    response = client_as(tenants.acme.members[0]).post(
        "/api/jobs", json={"type": "initialize", "args": {"course_id": tenants.globex.course}}
    )
    assert "does not exist in the organization" in problem(response, 422)
    assert count("job_status") == 0


def test_bodies_that_cannot_be_read_are_refused_in_one_line(client_as, tenants, server):
    alice = client_as(tenants.acme.members[0])
    headers = {"content-type": "application/json"}
    assert "not valid JSON" in problem(alice.post("/api/jobs", content=b'{"type":', headers=headers), 422)
    # json.loads can't nest this deep: FastAPI's 400, said in our words.
    deep = b'{"type": "test_job", "args": {"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
    assert "nested too deep" in problem(alice.post("/api/jobs", content=deep, headers=headers), 400)
    shallow = b'{"type": "test_job", "args": {"a": ' + b"[" * 40 + b"]" * 40 + b"}}"
    assert "JOBS_MAX_ARGS_DEPTH" in problem(alice.post("/api/jobs", content=shallow, headers=headers), 422)
    assert count("job_status") == 0


def test_a_body_over_the_limit_is_refused_whether_its_length_is_said_or_streamed(client_as, tenants):
    alice = client_as(tenants.acme.members[0])
    limit = StorageLimits.max_args_bytes + 64 * 1024
    oversized = b'{"type": "test_job", "args": {"a": "' + b"x" * limit + b'"}}'
    said = alice.post("/api/jobs", content=oversized, headers={"content-type": "application/json"})
    assert "JOBS_API_MAX_BODY_BYTES" in problem(said, 413)

    def chunks():
        for start in range(0, len(oversized), 64 * 1024):
            yield oversized[start : start + 64 * 1024]

    streamed = alice.post("/api/jobs", content=chunks(), headers={"content-type": "application/json"})
    assert "JOBS_API_MAX_BODY_BYTES" in problem(streamed, 413)
    # Under the body's limit but over the arguments': the service's own limit, named.
    large = {"type": "test_job", "args": {"delay_ms": 1, "pad": "x" * StorageLimits.max_args_bytes}}
    assert "JOBS_MAX_ARGS_BYTES" in problem(alice.post("/api/jobs", json=large), 422)
    assert count("job_status") == 0


def test_an_operator_sends_no_job(client_as, tenants):
    from tests.api.conftest import OPERATOR

    assert "acts in no user's name" in problem(client_as(OPERATOR).post("/api/jobs", json={"type": "test_job"}), 403)
    assert count("job_status") == 0


def test_the_list_pages_by_cursor_newest_first_without_gaps_or_repeats(client_as, tenants):
    alice = client_as(tenants.acme.members[0])
    sent = [send(alice) for _ in range(5)]
    newest_first = list(reversed(sent))
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"before": cursor} if cursor else {})
        page = alice.get("/api/jobs", params=params).json()
        seen += [job["job_id"] for job in page["jobs"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == newest_first
    # Towards newer jobs from the oldest one.
    oldest = alice.get("/api/jobs", params={"limit": 5}).json()["jobs"][-1]["job_id"]
    assert oldest == sent[0]
    page = alice.get("/api/jobs", params={"limit": 4}).json()
    newer = alice.get("/api/jobs", params={"after": page["next"], "limit": 2}).json()
    assert [job["job_id"] for job in newer["jobs"]] == newest_first[1:3]
    assert newer["next"] is not None


def test_the_list_filters_by_status_type_user_course_and_time(client_as, tenants):
    admin = client_as(tenants.acme.admin)
    alice_id, bob_id = tenants.acme.members
    alice, bob = client_as(alice_id), client_as(bob_id)
    old = send(alice)
    # The database's clock dates the jobs: the moment just after the first one is sent.
    after_old = datetime.fromisoformat(alice.get(f"/api/jobs/{old}").json()["job"]["created_at"])
    after_old += timedelta(microseconds=1)
    init = send(alice, "initialize", args={"course_id": tenants.acme.course})
    cancelled = send(bob)
    assert bob.post(f"/api/jobs/{cancelled}/cancel").status_code == 200

    def ids(**params: object) -> list[str]:
        response = admin.get("/api/jobs", params=params)
        assert response.status_code == 200, response.text
        return [job["job_id"] for job in response.json()["jobs"]]

    assert ids() == [cancelled, init, old]
    assert ids(status="cancelled") == [cancelled]
    assert ids(type="initialize") == [init]
    assert ids(user=bob_id) == [cancelled]
    assert ids(user="alice@acme.example") == [init, old]
    assert ids(course=tenants.acme.course) == [init]
    assert ids(since=after_old.isoformat()) == [cancelled, init]
    assert ids(until=after_old.isoformat()) == [old]
    naive_utc = after_old.astimezone(timezone.utc).replace(tzinfo=None)
    assert ids(until=naive_utc.isoformat()) == [old]  # no zone: UTC
    assert ids(since="2000-01-01T00:00:00+14:00", until=after_old.isoformat()) == [old]
    assert ids(organization=tenants.globex.id) == []
    assert ids(status="completed") == []


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"status": "active' OR '1'='1"}, "query parameter status"),
        ({"status": "active; DROP TABLE job_status"}, "query parameter status"),
        ({"type": "x' OR 1=1--"}, "unknown job type"),
        ({"type": "t" * 201}, "query parameter type"),
        ({"user": "' OR 1=1--"}, "no user"),
        ({"user": "nobody@acme.example"}, "no user"),
        ({"course": "1 OR 1=1"}, "query parameter course"),
        ({"limit": "10000000000000000000000000"}, "query parameter limit"),
        ({"limit": "1001"}, "less than or equal to 1000"),
        ({"limit": "0"}, "greater than or equal to 1"),
        ({"limit": "-1"}, "greater than or equal to 1"),
        ({"limit": "1e3"}, "query parameter limit"),
        ({"before": "not-a-cursor"}, "query parameter before"),
        ({"before": "x" * 10_000}, "query parameter before"),
        ({"after": "'; SELECT pg_sleep(10)--_________"}, "query parameter after"),
        ({"before": "f" + "_" * 31}, "not a cursor of the job list"),
        ({"before": "A" * 32, "after": "A" * 32}, "not both"),
        ({"since": "yesterday"}, "query parameter since"),
        ({"since": "2026-13-45"}, "query parameter since"),
        ({"until": "99999-01-01T00:00:00"}, "query parameter until"),
        ({"since": "2026-01-01T00:00:00+25:00"}, "query parameter since"),
    ],
    ids=lambda params: "&".join(f"{k}={str(v)[:20]}" for k, v in params.items()) if isinstance(params, dict) else None,
)
def test_hostile_filters_are_refused_in_one_line(client_as, tenants, params, says):
    alice = client_as(tenants.acme.members[0])
    job_id = send(alice)
    detail = problem(alice.get("/api/jobs", params=params), 422)
    assert says in detail
    assert len(detail) < 300
    assert [job["job_id"] for job in alice.get("/api/jobs").json()["jobs"]] == [job_id]


def test_a_waiting_job_is_cancelled_with_its_reason_then_retried(client_as, tenants):
    alice = client_as(tenants.acme.members[0])
    job_id = send(alice, delay_ms=60_000)
    response = alice.post(f"/api/jobs/{job_id}/cancel", json={"reason": "not needed"})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "job_id": job_id,
        "outcome": "cancelled",
        "previous": "pending",
        "interrupting": False,
        "abort_error": None,
    }
    again = alice.post(f"/api/jobs/{job_id}/cancel")
    assert again.status_code == 200 and again.json()["outcome"] == "already_cancelled"
    job = alice.get(f"/api/jobs/{job_id}").json()["job"]
    assert (job["status"], job["cancel_reason"], job["cancelled_by"]) == ("cancelled", "not needed", job["user_id"])

    retried = alice.post(f"/api/jobs/{job_id}/retry")
    assert retried.status_code == 201, retried.text
    new_id = retried.json()["job_id"]
    assert retried.json() == {"job_id": new_id, "retry_of": job_id, "outcome": "retried"}
    assert alice.get(f"/api/jobs/{job_id}").json()["job"]["retried_as"] == new_id
    assert alice.get(f"/api/jobs/{new_id}").json()["job"]["retry_of"] == job_id
    repeated = alice.post(f"/api/jobs/{job_id}/retry")
    assert repeated.status_code == 200 and repeated.json()["outcome"] == "already_retried"
    assert repeated.json()["job_id"] == new_id


def test_a_pending_job_is_not_retried_and_a_bad_reason_cancels_nothing(client_as, tenants):
    alice = client_as(tenants.acme.members[0])
    job_id = send(alice, delay_ms=60_000)
    assert "only a failed or cancelled job can be retried" in problem(alice.post(f"/api/jobs/{job_id}/retry"), 409)
    too_long = {"reason": "r" * (StorageLimits.max_reason_chars + 1)}
    assert "JOBS_MAX_REASON_CHARS" in problem(alice.post(f"/api/jobs/{job_id}/cancel", json=too_long), 413)
    assert "body.reason" in problem(alice.post(f"/api/jobs/{job_id}/cancel", json={"reason": 5}), 422)
    assert job_row(job_id)["status"] == "pending"


@pytest.mark.parametrize(
    "job_id", ["not-a-uuid", "12345678", "0b7c1f3e-9d4a-4e2b-8f61-3a5c7d9e1b20", "%27%20OR%201=1--"]
)
def test_a_malformed_or_unknown_id_is_not_found(client_as, tenants, job_id):
    alice = client_as(tenants.acme.members[0])
    assert "no job with id" in problem(alice.get(f"/api/jobs/{job_id}"), 404)
    assert "no job with id" in problem(alice.post(f"/api/jobs/{job_id}/cancel"), 404)
    assert "no job with id" in problem(alice.post(f"/api/jobs/{job_id}/retry"), 404)


def test_unknown_paths_and_methods_are_problems_too(client_as, tenants):
    alice = client_as(tenants.acme.members[0])
    assert "no such path" in problem(alice.get("/api/nothing"), 404)
    assert "DELETE is not allowed" in problem(alice.delete("/api/jobs"), 405)


def test_the_openapi_description_and_its_docs_are_served(api):
    paths = api.get("/openapi.json").json()["paths"]
    assert {"/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/cancel", "/api/jobs/{job_id}/retry"} <= paths.keys()
    assert "/api/workers" in paths
    docs = api.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_a_job_sent_after_a_delay_moment_is_dated_by_the_database(client_as, tenants):
    alice = client_as(tenants.acme.members[0])
    before = datetime.now(timezone.utc) - timedelta(minutes=1)
    job_id = send(alice)
    created = datetime.fromisoformat(alice.get(f"/api/jobs/{job_id}").json()["job"]["created_at"])
    assert created > before
