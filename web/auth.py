"""Who is calling: the dependency that every route of the API and of the pages takes.

A request is authenticated by a token (web.tokens) in its `Authorization: Bearer` header, or in
the session cookie that /login sets for the pages. A user's token is checked against the
database (a token for a user who no longer exists is refused); an operator's needs nothing more
than its signature. A cookie session's state-changing requests must also carry the session's
CSRF token (web.csrf). Anything wrong: 401, one line, and the token never repeated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request

from jobs import reads

from . import csrf, tokens
from .database import Threads
from .problems import Problem
from .tokens import InvalidToken

#: The session cookie: the token itself, HttpOnly and SameSite=Strict.
SESSION_COOKIE = "jobs_session"


@dataclass(frozen=True)
class Caller:
    """A user (their id, organization and role) or an operator (their name), and how the request
    was authenticated."""

    user_id: UUID | None
    organization_id: UUID | None
    role: str | None
    operator: str | None
    #: Signed in by the session cookie (a page), not by the Authorization header.
    by_cookie: bool
    #: The token presented: a page needs it to derive its CSRF token; never shown.
    token: str = field(repr=False)

    @property
    def is_operator(self) -> bool:
        return self.operator is not None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def name(self) -> str:
        """Who this is, for a log line or a page: the user's id, or `operator NAME`."""
        return f"operator {self.operator}" if self.operator is not None else str(self.user_id)


async def current_caller(request: Request, threads: Threads) -> Caller:
    """The caller of the request; 401 (InvalidToken, UnknownUser) when it can't be told, 403 for
    a cookie session's forged request."""
    secret = request.app.state.settings.secret
    token, by_cookie = _presented(request)
    claims = tokens.check(secret, token)
    if by_cookie:
        await csrf.check(request, secret, token)
    if claims.operator:
        caller = Caller(None, None, None, claims.subject, by_cookie, token)
    else:
        viewer = await threads.run(reads.viewer, claims.user_id)
        caller = Caller(viewer.user_id, viewer.organization_id, viewer.role, None, by_cookie, token)
    request.state.caller = caller.name  # for the access log (web.access_log)
    return caller


def _presented(request: Request) -> tuple[str, bool]:
    """The token, and whether it came from the session cookie; the header wins when both are there."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidToken("the Authorization header must be `Bearer <token>`")
        return token.strip(), False
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        return cookie, True
    raise InvalidToken(
        "no token: send `Authorization: Bearer <token>` (`jobctl token --as USER` makes one), or sign in at /login"
    )


async def operator_caller(caller: Annotated[Caller, Depends(current_caller)]) -> Caller:
    """The caller, who must be an operator (403 otherwise)."""
    if not caller.is_operator:
        raise Problem(403, "only operators may see this: it is the whole system's, not an organization's")
    return caller


async def user_caller(caller: Annotated[Caller, Depends(current_caller)]) -> Caller:
    """The caller, who must be a user: what is done in a user's name (a send, a retry) is not an
    operator's to do (403)."""
    if caller.is_operator:
        raise Problem(403, "an operator's token acts in no user's name: send and retry jobs with the token of a user")
    return caller


AnyCaller = Annotated[Caller, Depends(current_caller)]
OperatorCaller = Annotated[Caller, Depends(operator_caller)]
UserCaller = Annotated[Caller, Depends(user_caller)]
