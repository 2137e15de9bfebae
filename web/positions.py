"""A stream's position as the client holds it (the SSE `id`, sent back as `Last-Event-ID`):
a db.feed.Cursor, signed so that a client can only hand back a position the server gave it.

A forged position could name a snapshot from long ago, and make each read of that stream scan
everything written since; a signed one is one the server chose. The signature binds the
position to the stream's viewer too: a position is no use on another user's stream.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from db.feed import Cursor

# Longer than any position made here (a snapshot lists at most the server's connections).
MAX_CHARS = 16_384
_SIGNATURE_BYTES = 16


class BadPosition(ValueError):
    """A Last-Event-ID this server didn't give to this viewer."""


def encode(cursor: Cursor, secret: bytes, viewer: str) -> str:
    text = "|".join([cursor.seen, cursor.upto or "", "" if cursor.after_id is None else str(cursor.after_id)])
    body = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
    return f"{body}.{_sign(body, secret, viewer)}"


def decode(position: str, secret: bytes, viewer: str) -> Cursor:
    """The cursor of a position; BadPosition for anything else."""
    body, _, signature = position.partition(".")
    if len(position) > MAX_CHARS or not hmac.compare_digest(signature, _sign(body, secret, viewer)):
        raise BadPosition("Last-Event-ID is not a position of this stream")
    try:
        seen, upto, after_id = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode().split("|")
        return Cursor(seen, upto or None, int(after_id) if after_id else None)
    except ValueError as error:  # signed by us, so only a change of format gets here
        raise BadPosition("Last-Event-ID is not a position of this stream") from error


def _sign(body: str, secret: bytes, viewer: str) -> str:
    digest = hmac.new(secret, f"position|{viewer}|{body}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:_SIGNATURE_BYTES]).decode().rstrip("=")
