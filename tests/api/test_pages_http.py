"""The pages over plain HTTP (tests/browser drives them in a browser): errors outside /api are
HTML pages and inside it problems; the pages' headers and static files; forms refused without
the session's CSRF token, changing nothing; an operator's retry refused; the status counts
bounded."""

from __future__ import annotations

import httpx
import pytest

from db import queries
from db.connection import database
from tests.api.conftest import page, problem, send, user_token
from tests.helpers import count, job_row
from web import csrf


@pytest.fixture
def browser_as(server):
    """`browser_as(user_id)`: an httpx client signed in by the session cookie, as a browser is;
    and its CSRF token (`.csrf`)."""
    clients = []

    def make(user_id) -> httpx.Client:
        client = httpx.Client(base_url=server.url, timeout=30)
        clients.append(client)
        assert client.get("/login", params={"token": user_token(user_id)}).status_code == 200
        client.csrf = client.cookies[csrf.COOKIE]
        return client

    yield make
    for client in clients:
        client.close()


def test_errors_outside_the_api_are_pages_and_inside_it_problems(server, api, browser_as, client_as, tenants):
    signing_in = page(api.get("/"), 401)
    assert "Sign in to see your jobs" in signing_in
    assert f"jobctl token --as you@example.com --login-url --base-url {server.url}" in signing_in
    assert "Sign in to see your jobs" in page(api.get("/jobs/x"), 401)
    problem(api.get("/api/jobs"), 401)
    assert "no such path: /nowhere" in page(api.get("/nowhere"), 404)
    problem(api.get("/api/nowhere"), 404)
    alice = browser_as(tenants.acme.members[0])
    assert "only operators may see this" in page(alice.get("/workers"), 403)
    assert "no job with id not-an-id" in page(alice.get("/jobs/not-an-id"), 404)
    assert "is not a status" in page(alice.get("/", params={"status": "lost"}), 422)
    assert "not a cursor" in page(alice.get("/", params={"before": "x" * 32}), 422)
    problem(alice.get("/api/jobs", params={"status": "lost"}), 422)


def test_pages_are_not_cached_and_load_scripts_and_styles_only_from_the_server(browser_as, tenants):
    response = browser_as(tenants.acme.members[0]).get("/")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    for path in ("/static/dashboard-1.css", "/static/dashboard-1.js", "/static/favicon-1.svg"):
        assert path in response.text
        assert browser_as(tenants.acme.members[0]).get(path).status_code == 200, path


def test_a_form_without_the_sessions_csrf_token_changes_nothing(browser_as, client_as, tenants):
    alice = tenants.acme.members[0]
    job_id = send(client_as(alice), delay_ms=600_000)
    browser = browser_as(alice)
    cancel = f"/jobs/{job_id}/cancel"
    assert "must send its CSRF token" in page(browser.post(cancel, data={"reason": "forged"}), 403)
    assert "not this session's" in page(browser.post(cancel, data={"csrf_token": "forged"}), 403)
    other = {"csrf_token": browser.csrf, "reason": "from elsewhere"}
    assert "Origin" in page(browser.post(cancel, data=other, headers={"Origin": "https://evil.example"}), 403)
    assert job_row(job_id)["status"] == "pending"

    done = browser.post(cancel, data={"csrf_token": browser.csrf, "reason": "from the page"})
    assert (done.status_code, done.headers["location"]) == (303, f"/jobs/{job_id}")
    assert (job_row(job_id)["status"], job_row(job_id)["cancel_reason"]) == ("cancelled", "from the page")


def test_a_cancel_or_retry_the_service_refuses_is_a_page_that_says_why(browser_as, client_as, tenants):
    alice, bob = tenants.acme.members
    job_id = send(client_as(alice), delay_ms=600_000)
    intruder = browser_as(bob)
    said = page(intruder.post(f"/jobs/{job_id}/cancel", data={"csrf_token": intruder.csrf}), 403)
    assert "not the owner" in said or "may not" in said
    owner = browser_as(alice)
    assert "only a failed or cancelled job" in page(
        owner.post(f"/jobs/{job_id}/retry", data={"csrf_token": owner.csrf}), 409
    )
    assert job_row(job_id)["status"] == "pending" and count("job_status") == 1


def test_an_operator_may_not_retry_from_a_page(server, client_as, tenants):
    from tests.api.conftest import operator_token

    job_id = send(client_as(tenants.acme.members[0]), delay_ms=600_000)
    assert client_as(tenants.acme.members[0]).post(f"/api/jobs/{job_id}/cancel").status_code == 200
    with httpx.Client(base_url=server.url, timeout=30) as operator:
        assert operator.get("/login", params={"token": operator_token()}).status_code == 200
        token = operator.cookies[csrf.COOKIE]
        assert "acts in no user's name" in page(operator.post(f"/jobs/{job_id}/retry", data={"csrf_token": token}), 403)
    assert count("job_status") == 1


def test_status_counts_stop_at_their_bound_and_keep_to_the_callers_scope(client_as, tenants):
    alice, bob = tenants.acme.members
    sent = client_as(alice).post("/api/jobs", json={"type": "test_job", "jobs": [{}] * 5, "delay_ms": 600_000})
    assert sent.status_code == 201
    send(client_as(bob), delay_ms=600_000)
    send(client_as(tenants.globex.admin), delay_ms=600_000)

    assert queries.status_counts(cap=3)["pending"] == 4  # above the bound: "more than 3"
    assert queries.status_counts(cap=100) == {**dict.fromkeys(queries.STATUSES, 0), "pending": 7}
    assert queries.status_counts(cap=100, organization_id=tenants.acme.id)["pending"] == 6
    assert queries.status_counts(cap=100, user_id=alice)["pending"] == 5
    assert queries.status_counts(cap=100, user_id="not-an-id") == dict.fromkeys(queries.STATUSES, 0)
    from jobs import reads

    assert reads.status_counts(as_user=alice, cap=100)["pending"] == 5
    assert reads.status_counts(as_user=tenants.acme.admin, cap=100)["pending"] == 6
    assert reads.status_counts(as_user=tenants.acme.admin, cap=2)["pending"] == 3


def test_status_counts_and_recoveries_read_index_ranges(tenants):
    """The plans, not the timings: each status is an index range that stops at the bound, and the
    recoveries come from their partial index (no scan of job_status or job_events). The tables
    are tiny here, and would be scanned whatever their indexes: scans are made dear."""

    def plan(statement: str, parameters: list[object] | tuple = ()) -> str:
        rows = database.execute_sql("EXPLAIN " + statement, parameters).fetchall()
        return "\n".join(row[0] for row in rows)

    database.execute_sql("SET enable_seqscan = off")
    try:
        for organization_id, user_id in ((None, None), (tenants.acme.id, None), (tenants.acme.id, tenants.acme.admin)):
            counts = plan(*queries.status_counts_statement(1000, organization_id, user_id))
            # Without an index to use, a scan stays in the plan whatever it costs.
            assert "Seq Scan" not in counts and counts.count("Index") >= len(queries.STATUSES), counts
        recovered = plan(
            "SELECT e.id FROM job_events e WHERE e.event = 'worker_lost'"
            " OR (e.event = 'failed' AND e.details ->> 'error_type' = 'WorkerLost') ORDER BY e.id DESC LIMIT 20"
        )
        assert "job_events_recovered_idx" in recovered, recovered
    finally:
        database.execute_sql("RESET enable_seqscan")


def test_the_live_parts_of_a_job_page_keep_to_the_callers_jobs(browser_as, client_as, tenants):
    alice, bob = tenants.acme.members
    job_id = send(client_as(alice), delay_ms=600_000)
    assert 'id="job-timeline"' in page(browser_as(alice).get(f"/jobs/{job_id}/live"), 200)
    page(browser_as(bob).get(f"/jobs/{job_id}/live"), 404)
