"""The API with a real `dramatiq` worker process running the jobs it sends: a job followed to its
end, a running job cancelled and stopped by its worker, a failed job retried; and what each
audience reads of them (a tenant neither stacks nor workers' names)."""

from __future__ import annotations

from tests.api.conftest import OPERATOR, problem, send
from tests.helpers import events, wait_for

TENANT_HIDDEN = {"error_stack", "worker_id", "worker_process"}


def _status(client, job_id: str, wanted: str):
    """A condition: the job, read through the API, has this status (then its body)."""

    def check():
        body = client.get(f"/api/jobs/{job_id}").json()
        return body if body["job"]["status"] == wanted else None

    return check


def test_a_job_runs_to_its_end_and_each_audience_reads_its_run(workers, client_as, tenants):
    workers()
    alice, operator = client_as(tenants.acme.members[0]), client_as(OPERATOR)
    job_id = send(alice, args={"delay_ms": 10})
    seen = wait_for(_status(alice, job_id, "completed"), what="the job to complete", timeout=30)
    assert seen["job"]["result"] == {"waited_ms": 10, "attempt": 1}
    assert [event["to_status"] for event in seen["events"]] == ["pending", "active", "completed"]
    assert not TENANT_HIDDEN & seen["job"].keys()
    assert all("worker_id" not in event for event in seen["events"])

    whole = operator.get(f"/api/jobs/{job_id}").json()
    assert whole["job"]["worker_id"] and all("worker_id" in event for event in whole["events"])
    assert "already completed" in problem(alice.post(f"/api/jobs/{job_id}/cancel"), 409)
    assert "only a failed or cancelled job" in problem(alice.post(f"/api/jobs/{job_id}/retry"), 409)


def test_a_running_job_is_cancelled_and_stopped_by_its_worker(workers, client_as, tenants):
    workers()
    alice, admin, operator = (
        client_as(tenants.acme.members[0]),
        client_as(tenants.acme.admin),
        client_as(OPERATOR),
    )
    # Far longer than the test: it runs until it is cancelled.
    job_id = send(alice, args={"delay_ms": 600_000, "check_cancellation": True})
    running = wait_for(_status(operator, job_id, "active"), what="the job to start", timeout=30)

    listed = operator.get("/api/workers").json()
    holder = next(w for w in listed["workers"] if w["worker_id"] == running["job"]["worker_process"])
    assert (holder["state"], holder["jobs"], holder["stopped_at"]) == ("live", [job_id], None)
    assert "only operators" in problem(admin.get("/api/workers"), 403)

    response = admin.post(f"/api/jobs/{job_id}/cancel", json={"reason": "stop it"})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "job_id": job_id,
        "outcome": "cancelled",
        "previous": "active",
        "interrupting": True,
        "abort_error": None,
    }
    wait_for(lambda: events(job_id)[-1][0] == "execution_stopped", what="the worker to stop the job", timeout=30)
    seen = alice.get(f"/api/jobs/{job_id}").json()
    assert (seen["job"]["status"], seen["job"]["cancel_reason"]) == ("cancelled", "stop it")
    assert [event["event"] for event in seen["events"]].count("started") == 1


def test_a_failed_job_is_retried_as_a_new_job_linked_both_ways(workers, client_as, tenants):
    workers()
    alice, operator = client_as(tenants.acme.members[0]), client_as(OPERATOR)
    job_id = send(alice, args={"should_fail": True})
    failed = wait_for(_status(alice, job_id, "failed"), what="the job to fail", timeout=30)["job"]
    assert (failed["error_type"], failed["error_message"]) == (
        "IntentionalFailure",
        "intentional failure (should_fail=True)",
    )
    assert "error_stack" not in failed
    assert "IntentionalFailure" in operator.get(f"/api/jobs/{job_id}").json()["job"]["error_stack"]

    response = alice.post(f"/api/jobs/{job_id}/retry")
    assert response.status_code == 201, response.text
    retry_id = response.json()["job_id"]
    wait_for(_status(alice, retry_id, "failed"), what="the retry to run (and fail again)", timeout=30)
    assert alice.get(f"/api/jobs/{job_id}").json()["job"]["retried_as"] == retry_id
    retry = alice.get(f"/api/jobs/{retry_id}").json()
    assert retry["job"]["retry_of"] == job_id and retry["job"]["kwargs"] == {"should_fail": True}
    retried_event = alice.get(f"/api/jobs/{job_id}").json()["events"][-1]
    assert retried_event["event"] == "retried" and retried_event["actor_user_id"] == tenants.acme.members[0]
