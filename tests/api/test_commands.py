"""`jobctl serve` and `jobctl token`, as an operator types them; and the server when what it
stands on is gone: Redis (a send is recorded and answered 202) or PostgreSQL (503)."""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
import jwt
import pytest

from tests.api.conftest import bearer, log_lines, problem, user_token
from tests.helpers import count
from tests.support.cli import jobctl
from tests.support.server import SECRET, Server

WITH_SECRET = {"JOBS_API_SECRET": SECRET.decode()}


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"JOBS_API_SECRET": ""}, "JOBS_API_SECRET is not set"),
        ({"JOBS_API_SECRET": "   "}, "JOBS_API_SECRET is not set"),
        ({"JOBS_API_SECRET": "s" * 31}, "JOBS_API_SECRET is 31 bytes long: it must be 32 bytes or more"),
        ({**WITH_SECRET, "JOBS_API_DB_THREADS": "0"}, "JOBS_API_DB_THREADS must be 1 or more"),
    ],
    ids=["unset", "blank", "short", "no-threads"],
)
def test_the_server_refuses_to_start_without_a_good_secret(env, says):
    done = jobctl("serve", "--port", "0", env=env, timeout=30)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: ") and says in done.stderr
    assert done.stderr.count("\n") == 1
    assert "s" * 31 not in done.stderr


def test_the_server_refuses_a_port_out_of_range():
    done = jobctl("serve", "--port", "70000", env=WITH_SECRET, timeout=30)
    assert (done.returncode, done.stderr) == (2, "error: --port must be from 0 to 65535, not 70000\n")


def test_a_token_for_a_user_by_email(tenants):
    done = jobctl("token", "--as", "alice@acme.example", "--ttl", "10m", env=WITH_SECRET)
    assert done.returncode == 0, done.stderr
    claims = jwt.decode(done.stdout.strip(), SECRET, algorithms=["HS256"])
    assert claims["sub"] == tenants.acme.members[0] and "operator" not in claims
    assert 590 <= claims["exp"] - time.time() <= 600


def test_an_operators_token_names_the_operator():
    done = jobctl("token", "--operator", "carol", env=WITH_SECRET)
    assert done.returncode == 0, done.stderr
    claims = jwt.decode(done.stdout.strip(), SECRET, algorithms=["HS256"])
    assert (claims["sub"], claims["operator"]) == ("carol", True)


def test_a_login_link_signs_a_browser_in(server, tenants):
    done = jobctl("token", "--as", tenants.acme.admin, "--login-url", "--base-url", server.url + "/", env=WITH_SECRET)
    assert done.returncode == 0, done.stderr
    link = done.stdout.strip()
    assert link.startswith(f"{server.url}/login?token=")
    with httpx.Client(timeout=30) as browser:
        assert browser.get(link).status_code == 200
        assert browser.get(f"{server.url}/api/jobs").status_code == 200


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (("--as", "nobody@acme.example"), WITH_SECRET, "no user nobody@acme.example"),
        (("--as", ""), WITH_SECRET, "--as needs a user's email or id"),
        (("--as", "alice@acme.example", "--ttl", "forever"), WITH_SECRET, "--ttl takes a duration"),
        (("--as", "alice@acme.example", "--ttl", "31d"), WITH_SECRET, "at most 30 days"),
        (("--as", "alice@acme.example", "--ttl", "0s"), WITH_SECRET, "above 0"),
        (("--as", "alice@acme.example"), {"JOBS_API_SECRET": ""}, "JOBS_API_SECRET is not set"),
        (("--operator", " "), WITH_SECRET, "an operator's token names the operator"),
    ],
    ids=["unknown-user", "blank-user", "bad-ttl", "long-ttl", "zero-ttl", "no-secret", "blank-operator"],
)
def test_a_token_that_can_not_be_made_is_refused_in_one_line(tenants, args, env, says):
    done = jobctl("token", *args, env=env)
    assert done.returncode == 2 and done.stdout == ""
    assert says in done.stderr and done.stderr.count("\n") == 1


def test_a_send_whose_broker_is_unreachable_is_recorded_and_accepted(tenants, tmp_path):
    server = Server(tmp_path / "server.log", {"REDIS_URL": "redis://127.0.0.1:1/0"})
    try:
        with httpx.Client(
            base_url=server.url, timeout=30, headers=bearer(user_token(tenants.acme.members[0]))
        ) as alice:
            response = alice.post("/api/jobs", json={"type": "test_job", "key": "once"})
            assert response.status_code == 202, response.text
            body = response.json()
            assert body["published"] is False and len(body["job_ids"]) == 1
            assert "will be sent when the broker is back" in body["detail"]
            # Recorded: the same key is the same job, not a second one.
            again = alice.post("/api/jobs", json={"type": "test_job", "key": "once"})
            assert again.json()["job_ids"] == body["job_ids"]
            assert count("job_status") == 1
    finally:
        server.stop()


def test_a_server_whose_database_is_unreachable_answers_503_in_one_line(tenants, tmp_path):
    server = Server(tmp_path / "server.log", {"DATABASE_URL": "postgresql://jobs_service@127.0.0.1:1/jobs"})
    try:
        token = user_token(tenants.acme.members[0], ttl=timedelta(minutes=5))
        with httpx.Client(base_url=server.url, timeout=30, headers=bearer(token)) as alice:
            for response in (alice.get("/api/jobs"), alice.post("/api/jobs", json={"type": "test_job"})):
                assert "database is unreachable" in problem(response, 503)
                assert response.headers["retry-after"] == "5"
    finally:
        assert server.stop() == 130, "Ctrl-C ends the server as it ends every jobctl command"
    lines = log_lines(server)
    assert lines[-1]["event"] == f"Finished server process [{server.process.pid}]", lines[-3:]
    unreachable = [line for line in lines if line["event"] == "database_unreachable"]
    assert len(unreachable) == 2 and all(line["path"] == "/api/jobs" for line in unreachable)
    assert count("job_status") == 0
