"""How what a caller gave appears in an error message or a log line: a short, escaped excerpt.

A message that repeats its input whole repeats 10 MB of it, and with it the newlines and terminal
escapes that forge lines in an operator's terminal or a log; so every message that names input
shows it through one of these.
"""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

EXCERPT = 60
#: The longest message a refusal quotes from elsewhere (a validator's, Python's own).
MESSAGE = 240

# What needs no quoting: ids, emails, names (of job types, of organizations: single spaces).
_PLAIN = re.compile(r"[\w.@+:/-]+( [\w.@+:/-]+)*", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def excerpt(value: Any, limit: int = EXCERPT) -> str:
    """`value` as Python writes it (repr: quoted, control characters escaped), at most about
    `limit` characters: a longer one is cut, with an ellipsis and its full length."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}… ({len(value)} characters)"
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - nested too deep, an int too long to print, a broken __repr__
        return f"<a {type(value).__name__} that can't be shown>"
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def token(value: Any, limit: int = EXCERPT) -> str:
    """`value` bare when it is a short plain word (an id, an email: `no user bob@acme.example`),
    its excerpt otherwise."""
    if isinstance(value, (str, UUID)):
        text = str(value)
        if len(text) <= limit and _PLAIN.fullmatch(text):
            return text
    return excerpt(value, limit)


def clipped(message: str, limit: int = MESSAGE) -> str:
    """A message made elsewhere, that may hold input: one line, control characters escaped, at
    most about `limit` characters."""
    message = message[: limit + 1]
    message = _CONTROL.sub(lambda found: repr(found[0])[1:-1], message)
    return message if len(message) <= limit else f"{message[:limit]}…"
