"""Who may call: bearer tokens (each bad kind refused in one line, never echoed nor logged), the
browser's session cookie from /login, and CSRF protection of a cookie session's changes."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import jwt
import pytest

from tests.api.conftest import OPERATOR, bearer, log_lines, operator_token, page, problem, send, user_token
from tests.helpers import count
from tests.support.server import SECRET
from web import csrf

OTHER_SECRET = b"another-secret-of-at-least-32-bytes!!"


def _claims(**changes: object) -> dict:
    now = int(time.time())
    return {"sub": str(uuid.uuid4()), "iat": now, "exp": now + 600, **changes}


def _signed(claims: dict, secret: bytes = SECRET, algorithm: str = "HS256", **header: object) -> str:
    return jwt.encode(claims, secret, algorithm=algorithm, headers=header or None)


def test_a_member_with_a_token_lists_their_jobs(client_as, tenants):
    alice = client_as(tenants.acme.members[0])
    response = alice.get("/api/jobs")
    assert response.status_code == 200, response.text
    assert response.json() == {"jobs": [], "next": None}


def test_a_request_without_a_token_is_refused(api):
    response = api.get("/api/jobs")
    detail = problem(response, 401)
    assert "no token" in detail and "Authorization: Bearer" in detail
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_an_expired_token_is_refused(api, tenants):
    token = _signed(_claims(sub=tenants.acme.members[0], exp=int(time.time()) - 5))
    assert "expired" in problem(api.get("/api/jobs", headers=bearer(token)), 401)


def test_a_token_signed_with_another_secret_is_refused(api, tenants):
    token = _signed(_claims(sub=tenants.acme.members[0]), OTHER_SECRET)
    assert "signature does not match" in problem(api.get("/api/jobs", headers=bearer(token)), 401)


def test_an_operator_claim_forged_with_another_secret_is_refused(api):
    token = _signed(_claims(sub="mallory", operator=True), OTHER_SECRET)
    assert "signature does not match" in problem(api.get("/api/workers", headers=bearer(token)), 401)


def test_an_unsigned_token_is_refused(api, tenants):
    # alg "none": what it claims would be believed by a server that let the token choose.
    token = jwt.encode(_claims(sub=tenants.acme.admin, operator=True), None, algorithm="none")
    assert "HS256" in problem(api.get("/api/jobs", headers=bearer(token)), 401)


def test_a_token_of_another_hmac_algorithm_is_refused(api, tenants):
    token = _signed(_claims(sub=tenants.acme.admin), algorithm="HS512")
    assert "HS256" in problem(api.get("/api/jobs", headers=bearer(token)), 401)


@pytest.mark.parametrize(
    ("header", "says"),
    [
        ("Bearer not-a-token", "malformed"),
        ("Bearer a.b.c", "malformed"),
        ("Bearer " + "x" * 5000, "longer than"),
        ("Basic YWxpY2U6c2VjcmV0", "Bearer <token>"),
        ("Bearer", "Bearer <token>"),
    ],
    ids=["garbage", "three-parts", "too-long", "basic", "no-token"],
)
def test_a_malformed_authorization_is_refused(api, header, says):
    response = api.get("/api/jobs", headers={"Authorization": header})
    detail = problem(response, 401)
    assert says in detail
    assert "x" * 100 not in detail and "YWxpY2U6" not in detail  # never echoed


@pytest.mark.parametrize(
    ("claims", "says"),
    [
        ({"exp": None}, "'exp' claim"),
        ({"sub": None}, "'sub' claim"),
        ({"sub": "not-a-uuid"}, "not a user id"),
        ({"sub": 42}, "malformed"),
        ({"exp": "tomorrow"}, "malformed"),
        ({"operator": "yes"}, "true or false"),
        ({"operator": True, "sub": "   "}, "names the operator"),
    ],
    ids=[
        "no-exp",
        "no-sub",
        "sub-not-a-user-id",
        "sub-not-text",
        "exp-not-a-number",
        "operator-not-bool",
        "blank-operator",
    ],
)
def test_a_token_with_bad_claims_is_refused(api, claims, says):
    payload = {key: value for key, value in {**_claims(), **claims}.items() if value is not None}
    assert says in problem(api.get("/api/jobs", headers=bearer(_signed(payload))), 401)


def test_a_token_of_a_user_who_does_not_exist_is_refused(api):
    unknown = str(uuid.uuid4())
    assert f"unknown user {unknown}" in problem(api.get("/api/jobs", headers=bearer(user_token(unknown))), 401)


def test_no_token_is_written_to_the_log(server, api, client_as, tenants):
    token = user_token(tenants.acme.members[0])
    assert api.get("/api/jobs", headers=bearer(token)).status_code == 200
    assert api.get("/login", params={"token": token}).status_code == 200
    forged = _signed(_claims(sub=tenants.acme.admin), OTHER_SECRET)
    problem(api.get("/api/jobs", headers=bearer(forged)), 401)
    page(api.get("/login", params={"token": forged}), 401)
    lines = log_lines(server)
    # The requests above were logged, by path only.
    assert any(line.get("path") == "/login" and line.get("status") == 200 for line in lines)
    for secret_part in (token, token.split(".")[2], forged.split(".")[2]):
        assert secret_part not in server.log()


def test_login_keeps_the_token_in_a_strict_http_only_cookie_and_forwards_home(api, tenants):
    response = api.get("/login", params={"token": user_token(tenants.acme.members[0])})
    # A page of this site that forwards home, not a redirect: a SameSite=Strict cookie is not
    # sent on a redirect whose chain began on another site (tests/browser follows such a link).
    assert response.status_code == 200 and "location" not in response.headers
    assert '<meta http-equiv="refresh" content="0; url=/">' in response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    cookies = {value.split("=", 1)[0]: value for value in response.headers.get_list("set-cookie")}
    session = cookies["jobs_session"].lower()
    assert "httponly" in session and "samesite=strict" in session and "path=/" in session
    assert "httponly" not in cookies[csrf.COOKIE].lower()  # the pages' scripts read it
    # The cookie alone now signs the client in.
    listed = api.get("/api/jobs")
    assert listed.status_code == 200 and listed.json() == {"jobs": [], "next": None}


@pytest.mark.parametrize("kind", ["none", "forged", "expired", "unknown-user"])
def test_login_with_a_bad_token_sets_no_cookie(api, tenants, kind):
    token = {
        "none": "",
        "forged": _signed(_claims(sub=tenants.acme.admin), OTHER_SECRET),
        "expired": _signed(_claims(sub=tenants.acme.admin, exp=int(time.time()) - 5)),
        "unknown-user": user_token(uuid.uuid4()),
    }[kind]
    response = api.get("/login", params={"token": token})
    page(response, 401)
    assert "jobctl token --as" in response.text  # the sign-in page: how to get a link
    assert "set-cookie" not in response.headers
    problem(api.get("/api/jobs"), 401)


def test_an_operator_signs_in_by_cookie_too(api):
    assert api.get("/login", params={"token": operator_token("ops")}).status_code == 200
    assert api.get("/api/workers").status_code == 200


def _signed_in(api, user_id) -> str:
    """Signs `api` in by cookie; the session's CSRF token."""
    assert api.get("/login", params={"token": user_token(user_id)}).status_code == 200
    return api.cookies[csrf.COOKIE]


def test_a_cookie_session_changes_nothing_without_its_csrf_token(api, client_as, tenants):
    alice = tenants.acme.members[0]
    job_id = send(client_as(alice), delay_ms=60_000)
    token = _signed_in(api, alice)
    cancel = f"/api/jobs/{job_id}/cancel"

    assert "must send its CSRF token" in problem(api.post(cancel), 403)
    assert "not this session's" in problem(api.post(cancel, headers={csrf.HEADER: "forged"}), 403)
    # Another session's token (of the same user, even) is not this one's.
    other_session = csrf.token_for(SECRET, user_token(alice, ttl=timedelta(minutes=5)))
    assert "not this session's" in problem(api.post(cancel, headers={csrf.HEADER: other_session}), 403)
    cross_site = {csrf.HEADER: token, "Origin": "https://evil.example"}
    assert "Origin" in problem(api.post(cancel, headers=cross_site), 403)
    sends = api.post("/api/jobs", json={"type": "test_job"})
    problem(sends, 403)
    assert count("job_status") == 1
    assert client_as(alice).get(f"/api/jobs/{job_id}").json()["job"]["status"] == "pending"

    same_site = {csrf.HEADER: token, "Origin": str(api.base_url).rstrip("/")}
    cancelled = api.post(cancel, headers=same_site, json={"reason": "from the page"})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["outcome"] == "cancelled"


def test_a_cookie_session_sends_its_csrf_token_in_a_form(api, tenants):
    token = _signed_in(api, tenants.acme.members[0])
    assert "not this session's" in page(api.post("/logout", data={"csrf_token": "forged"}), 403)
    response = api.post("/logout", data={"csrf_token": token})
    assert response.status_code == 303
    assert all("Max-Age=0" in cookie for cookie in response.headers.get_list("set-cookie"))
    problem(api.get("/api/jobs"), 401)


def test_a_bearer_request_needs_no_csrf_token_even_beside_a_cookie(api, client_as, tenants):
    alice = tenants.acme.members[0]
    _signed_in(api, alice)
    job_id = send(client_as(alice))
    # No browser adds an Authorization header by itself: the header's caller is the one who asks.
    response = api.post(f"/api/jobs/{job_id}/cancel", headers=bearer(user_token(alice)))
    assert response.status_code == 200, response.text


def test_an_operator_token_reads_workers_and_a_user_token_does_not(client_as, tenants):
    assert client_as(OPERATOR).get("/api/workers").status_code == 200
    assert "only operators" in problem(client_as(tenants.acme.admin).get("/api/workers"), 403)
