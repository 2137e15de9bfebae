"""What every signed-in page's layout needs: who is signed in, and the session's form token."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from .. import csrf
from ..auth import Caller


def layout(request: Request, caller: Caller, emails: dict[str, str], *, nav: str | None = None) -> dict[str, Any]:
    """The caller, their email (from `emails`, which a page's read filled) and the CSRF token of
    their session, which every form that changes something carries (web.csrf)."""
    secret = request.app.state.settings.secret
    return {
        "caller": caller,
        "caller_email": emails.get(str(caller.user_id)) if caller.user_id is not None else None,
        "csrf_token": csrf.token_for(secret, caller.token),
        "nav": nav,
    }
