"""Each audience sees what row-level security lets it, through the API: a member their own jobs,
an admin their organization's, another organization nothing (404, as if the job did not exist),
an operator every tenant's, whole."""

from __future__ import annotations

import pytest

from tests.api.conftest import OPERATOR, problem, send
from tests.helpers import events, job_row

TENANT_HIDDEN = {"error_stack", "worker_id", "worker_process"}


@pytest.fixture
def jobs(client_as, tenants):
    """A job of each of acme's members and one of globex's member, all waiting."""
    alice, bob = tenants.acme.members
    return {
        "alice": send(client_as(alice), delay_ms=60_000),
        "bob": send(client_as(bob), delay_ms=60_000),
        "globex": send(client_as(tenants.globex.members[0]), delay_ms=60_000),
    }


def _listed(client, **params) -> set[str]:
    response = client.get("/api/jobs", params=params)
    assert response.status_code == 200, response.text
    return {job["job_id"] for job in response.json()["jobs"]}


def test_a_member_sees_only_their_own_jobs(client_as, tenants, jobs):
    alice = client_as(tenants.acme.members[0])
    assert _listed(alice) == {jobs["alice"]}
    # Asking for a colleague's jobs by name gives nothing of theirs.
    assert _listed(alice, user=tenants.acme.members[1]) == set()
    assert "no job with id" in problem(alice.get(f"/api/jobs/{jobs['bob']}"), 404)
    assert "no job with id" in problem(alice.get(f"/api/jobs/{jobs['globex']}"), 404)


def test_a_member_may_not_cancel_nor_retry_a_colleagues_job(client_as, tenants, jobs):
    alice = client_as(tenants.acme.members[0])
    assert "may not cancel" in problem(alice.post(f"/api/jobs/{jobs['bob']}/cancel"), 403)
    assert job_row(jobs["bob"])["status"] == "pending"
    # The refusal is recorded in the job's history, naming who asked.
    assert events(jobs["bob"])[-1][0] == "cancel_refused"
    # Bob cancels it himself: a job that may be retried, which Alice still may not retry.
    assert client_as(tenants.acme.members[1]).post(f"/api/jobs/{jobs['bob']}/cancel").status_code == 200
    assert "may not retry" in problem(alice.post(f"/api/jobs/{jobs['bob']}/retry"), 403)


def test_an_admin_sees_and_cancels_the_organizations_jobs(client_as, tenants, jobs):
    admin = client_as(tenants.acme.admin)
    assert _listed(admin) == {jobs["alice"], jobs["bob"]}
    assert _listed(admin, user="bob@acme.example") == {jobs["bob"]}
    shown = admin.get(f"/api/jobs/{jobs['alice']}")
    assert shown.status_code == 200 and not TENANT_HIDDEN & shown.json()["job"].keys()
    response = admin.post(f"/api/jobs/{jobs['alice']}/cancel", json={"reason": "admin says"})
    assert response.status_code == 200 and response.json()["outcome"] == "cancelled"
    job = job_row(jobs["alice"])
    assert (str(job["cancelled_by"]), job["cancel_reason"]) == (tenants.acme.admin, "admin says")
    retried = admin.post(f"/api/jobs/{jobs['alice']}/retry")
    assert retried.status_code == 201
    # The retry is the owner's job, sent again on the admin's word.
    assert str(job_row(retried.json()["job_id"])["user_id"]) == tenants.acme.members[0]


def test_another_organizations_job_does_not_exist_for_a_tenant(client_as, tenants, jobs):
    globex_admin = client_as(tenants.globex.admin)
    assert _listed(globex_admin) == {jobs["globex"]}
    assert _listed(globex_admin, organization=tenants.acme.id) == set()
    assert "no user" in problem(globex_admin.get("/api/jobs", params={"user": "alice@acme.example"}), 422)
    for request in (
        globex_admin.get(f"/api/jobs/{jobs['alice']}"),
        globex_admin.post(f"/api/jobs/{jobs['alice']}/cancel"),
        globex_admin.post(f"/api/jobs/{jobs['alice']}/retry"),
    ):
        assert "no job with id" in problem(request, 404)
    # Nothing was written into the other organization's history.
    assert [event[0] for event in events(jobs["alice"])] == ["enqueued"]
    assert job_row(jobs["alice"])["status"] == "pending"


def test_an_operator_sees_every_tenants_jobs_whole(client_as, tenants, jobs):
    operator = client_as(OPERATOR)
    assert _listed(operator) == set(jobs.values())
    assert _listed(operator, organization=tenants.globex.id) == {jobs["globex"]}
    assert _listed(operator, user="bob@acme.example") == {jobs["bob"]}
    shown = operator.get(f"/api/jobs/{jobs['globex']}")
    assert shown.status_code == 200
    assert TENANT_HIDDEN <= shown.json()["job"].keys()  # the operators' fields, empty while waiting


def test_an_operator_cancels_by_name_and_sends_nor_retries_in_no_ones_name(client_as, tenants, jobs):
    operator = client_as(OPERATOR)
    response = operator.post(f"/api/jobs/{jobs['globex']}/cancel", json={"reason": "runaway"})
    assert response.status_code == 200 and response.json()["outcome"] == "cancelled"
    job = operator.get(f"/api/jobs/{jobs['globex']}").json()
    assert job["job"]["cancel_reason"] == "runaway" and job["job"]["cancelled_by"] is None
    assert job["events"][-1]["details"]["operator"] == "ops"
    assert "acts in no user's name" in problem(operator.post(f"/api/jobs/{jobs['globex']}/retry"), 403)
    assert "no job with id" in problem(operator.post("/api/jobs/not-an-id/cancel"), 404)
