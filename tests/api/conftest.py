"""The HTTP API against a real server: `jobctl serve` in a subprocess, on this pytest worker's
database and Redis namespace, started once per session (each test's tenants are new rows in the
same database); httpx as the client; real worker processes where a job must run."""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterator
from datetime import timedelta

import httpx
import pytest

from tests.acceptance.conftest import workers  # noqa: F401 - real worker processes, where a job must run
from tests.support.server import SECRET, Server
from web import tokens


@pytest.fixture(scope="session")
def server(database, redis_namespace, tmp_path_factory) -> Iterator[Server]:
    started = Server(tmp_path_factory.mktemp("server") / "server.log")
    yield started
    started.stop()


def user_token(user_id: object, ttl: timedelta = timedelta(hours=1)) -> str:
    return tokens.mint(SECRET, str(user_id), ttl)


def operator_token(name: str = "ops") -> str:
    return tokens.mint(SECRET, name, timedelta(hours=1), operator=True)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def api(server) -> Iterator[httpx.Client]:
    """A client with no identity of its own (and a cookie jar of its own)."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture
def client_as(server) -> Iterator[Callable[[object], httpx.Client]]:
    """`client_as(user_id)`: a client that sends that user's token; `client_as(OPERATOR)`: an
    operator's."""
    clients: list[httpx.Client] = []

    def make(who: object) -> httpx.Client:
        token = operator_token() if who is OPERATOR else user_token(who)
        client = httpx.Client(base_url=server.url, timeout=30, headers=bearer(token))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


OPERATOR = object()


def problem(response: httpx.Response, status: int) -> str:
    """The response is an RFC 9457 problem of that status with a one-line detail; the detail."""
    assert response.status_code == status, f"{response.status_code} {response.text[:500]}"
    assert response.headers["content-type"] == "application/problem+json", response.headers
    body = response.json()
    assert body["status"] == status and body["type"] == "about:blank", body
    detail = body["detail"]
    assert isinstance(detail, str) and detail.strip(), body
    assert "\n" not in detail and len(detail) <= 500, detail
    assert "Traceback" not in response.text and 'File "' not in response.text, response.text
    return detail


def send(client: httpx.Client, job_type: str = "test_job", **fields: object) -> str:
    """Sends one job through the API; its id."""
    response = client.post("/api/jobs", json={"type": job_type, **fields})
    assert response.status_code == 201, response.text
    (job_id,) = response.json()["job_ids"]
    return job_id


def log_lines(server: Server) -> list[dict]:
    return [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]


def page(response: httpx.Response, status: int) -> str:
    """The response is an HTML page of that status (an error outside /api is a page, not a
    problem) that says no stack; its text, with HTML's character references read."""
    assert response.status_code == status, f"{response.status_code} {response.text[:500]}"
    assert response.headers["content-type"].split(";")[0] == "text/html", response.headers
    assert "Traceback" not in response.text and 'File "' not in response.text, response.text
    return html.unescape(response.text)
