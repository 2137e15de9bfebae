"""GET /metrics: the system's numbers in Prometheus' text format (jobs.metrics), for operators'
scrapers.

Who may read it: a request whose bearer token is JOBS_METRICS_TOKEN (a static secret for a
scraper's configuration, `authorization: credentials_file` in Prometheus; it opens this path and
nothing else), or an operator's token (`jobctl token --operator`). A user's token is refused
(403): the numbers are the whole system's, with the workers' host names. Not open to loopback
alone: behind a proxy on the same host, every request would come from loopback.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from jobs.metrics import exposition, known_job_types

from . import tokens
from .database import Threads
from .problems import Problem
from .tokens import InvalidToken

router = APIRouter(tags=["operations"])

# The text format every Prometheus reads (prometheus_client's "latest", 1.0.0, is newer than the
# servers of Debian 12), which generate_latest writes.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


async def scraper(request: Request) -> str:
    """Who is scraping: the metrics token's holder, or an operator; 401 / 403 otherwise."""
    settings = request.app.state.settings
    header = request.headers.get("authorization")
    scheme, _, token = (header or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise InvalidToken(
            "send `Authorization: Bearer <token>`: JOBS_METRICS_TOKEN, or an operator's token (`jobctl token --operator`)"
        )
    if settings.metrics_token is not None and hmac.compare_digest(
        token.encode("utf-8", "surrogateescape"), settings.metrics_token
    ):
        who = "metrics token"
    else:
        claims = tokens.check(settings.secret, token)
        if not claims.operator:
            raise Problem(403, "only operators and the metrics token may read /metrics: the whole system's numbers")
        who = f"operator {claims.subject}"
    request.state.caller = who  # for the access log (web.access_log)
    return who


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}}, 403: {"description": "a user's token"}},
)
async def metrics(who: Annotated[str, Depends(scraper)], request: Request, threads: Threads) -> Response:
    """The system's numbers in Prometheus' text format (README: Metrics)."""
    body = await threads.run(exposition, request.app.state.settings.system, known_job_types())
    return Response(body, media_type=CONTENT_TYPE)
