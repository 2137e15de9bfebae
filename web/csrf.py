"""Cross-site request forgery: a request that a browser authenticates by itself (with the session
cookie) and that changes something must also carry a token that only our pages know.

The token is derived from the session (an HMAC of the session's token under the server's secret),
so it needs no storage, dies with the session, and one session's token is worthless in
another's. Pages put it in their forms (`csrf_token` field) or send it as the `X-CSRF-Token`
header (htmx: `hx-headers`); the login also sets it in a cookie that scripts may read
(`jobs_csrf`), for the double-submit. The session cookie itself is SameSite=Strict, so a
cross-site request doesn't carry it anyway: the token is the second lock. A request that carries
its token in the Authorization header (the JSON API's clients) needs none: no browser adds
that header on its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import urlsplit

from fastapi import Request

from .problems import Problem

HEADER = "X-CSRF-Token"
FORM_FIELD = "csrf_token"
#: The cookie a page's script may read it from (not HttpOnly, unlike the session's).
COOKIE = "jobs_csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


def token_for(secret: bytes, session_token: str) -> str:
    """The CSRF token of the session whose token is `session_token`."""
    digest = hmac.new(secret, b"csrf\x00" + session_token.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


async def check(request: Request, secret: bytes, session_token: str) -> None:
    """Refuses (403) a state-changing request of a cookie session that comes from another origin or
    lacks the session's CSRF token."""
    if request.method in SAFE_METHODS:
        return
    origin = request.headers.get("origin")
    if origin is not None and not _same_origin(origin, request):
        raise Problem(403, "cross-site request refused: the Origin is not this server's")
    given = request.headers.get(HEADER)
    if given is None and request.headers.get("content-type", "").split(";")[0].strip() in _FORMS:
        value = (await request.form()).get(FORM_FIELD)
        given = value if isinstance(value, str) else None
    if not given:
        raise Problem(
            403,
            f"cross-site request refused: a request signed in by cookie must send its CSRF token "
            f"({HEADER} header or {FORM_FIELD} field)",
        )
    if not hmac.compare_digest(given.encode(), token_for(secret, session_token).encode()):
        raise Problem(403, "cross-site request refused: the CSRF token is not this session's")


def _same_origin(origin: str, request: Request) -> bool:
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    host = request.headers.get("host", "")
    return parts.scheme == request.url.scheme and parts.netloc == host
