"""Signing in a browser: /login takes a token (from `jobctl token --login-url`), keeps it in an
HttpOnly, SameSite=Strict cookie and sends the browser on to `/`; /logout forgets it.

The token is in the link's query string only for that one request: the answer tells the browser
to send no Referer and to cache nothing, and the server logs no query string.

/login answers with a small page of this site that forwards to `/`, not with a redirect: a link
to /login is usually followed from another site (a chat, a mail), and a browser does not send a
SameSite=Strict cookie on a request whose chain of redirects began on another site. The page's
own forward is a navigation started by this site, so the cookie goes with it.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from jobs import reads

from . import csrf, tokens
from .auth import SESSION_COOKIE, AnyCaller
from .database import Threads
from .templating import page
from .tokens import InvalidToken

router = APIRouter(tags=["session"])

_PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


@router.get("/login", response_class=HTMLResponse)
async def login(request: Request, threads: Threads, token: str = "") -> Response:
    """Signs the browser in with `token` (a user's or an operator's) and forwards it to `/`.
    A token that doesn't check out, or whose user doesn't exist: 401 (the sign-in page), and no
    cookie."""
    secret = request.app.state.settings.secret
    if not token:
        raise InvalidToken("no token: open the link that `jobctl token --as USER --login-url` prints")
    claims = tokens.check(secret, token)
    if not claims.operator:
        await threads.run(reads.viewer, claims.user_id)  # UnknownUser: 401
    response = page("login.html", headers=_PRIVATE, destination="/")
    secure = request.url.scheme == "https"
    max_age = max(0, claims.expires_at - int(time.time()))
    response.set_cookie(
        SESSION_COOKIE, token, max_age=max_age, path="/", secure=secure, httponly=True, samesite="strict"
    )
    # Readable by the pages' scripts, for the double-submit (web.csrf).
    response.set_cookie(
        csrf.COOKIE, csrf.token_for(secret, token), max_age=max_age, path="/", secure=secure, samesite="strict"
    )
    return response


@router.post("/logout", status_code=303, response_class=RedirectResponse)
async def logout(caller: AnyCaller) -> Response:
    """Forgets the session (a cookie session's request: with its CSRF token) and redirects to `/`."""
    response = RedirectResponse("/", status_code=303, headers=_PRIVATE)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    response.delete_cookie(csrf.COOKIE, path="/", samesite="strict")
    return response
