"""What PostgreSQL can store: text without NUL characters or lone surrogates, JSON without NaN,
values of a bounded size.

A job's own output (its result, its error) is made storable here, so that the end of every
attempt is recorded whatever the job returned or raised: a NUL becomes U+FFFD, an overlong text
is cut with a note that says so, and a result that can't be stored whole is replaced by a marker
that says why. A job's arguments are never rewritten: a send whose arguments can't be stored is
refused instead (`problem`).
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_RESULT_BYTES = 1_000_000
MAX_ERROR_MESSAGE = 4_000
MAX_STACK = 16_000
PREVIEW = 500
REPLACEMENT = "\ufffd"

# What json.dumps writes for a NUL or a surrogate: jsonb refuses both.
_UNSTORABLE_ESCAPE = re.compile(r"\\u(0000|d[89a-f])", re.IGNORECASE)


def text(value: str | None, limit: int, *, keep_end: bool = False) -> str | None:
    """`value` as PostgreSQL can store it, at most about `limit` characters (the end of it with
    keep_end: the end of a stack is where the error is)."""
    if value is None:
        return None
    value = _clean(value)
    if len(value) > limit:
        cut = len(value) - limit
        value = (
            f"[{cut} characters cut] ...{value[-limit:]}" if keep_end else f"{value[:limit]}... [{cut} characters cut]"
        )
    return value


def json_value(value: Any, max_bytes: int = MAX_RESULT_BYTES) -> Any:
    """A JSON value PostgreSQL can store: `value` itself, with NUL characters replaced, or, when
    it is not JSON (NaN, an object) or too large, a marker that says why and shows its start."""
    try:
        encoded = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as error:
        return _marker(f"not JSON: {error}", value)
    if _UNSTORABLE_ESCAPE.search(encoded):
        value = _cleaned(value)
        encoded = json.dumps(value)
    if len(encoded) > max_bytes:
        return _marker(f"{len(encoded)} bytes of JSON, more than the {max_bytes} a result may take", value)
    return value


def problem(value: Any) -> str | None:
    """Why `value` can't be stored as it is, or None: for arguments, which are refused, not rewritten."""
    try:
        encoded = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as error:
        return f"not storable as JSON ({error})"
    if _UNSTORABLE_ESCAPE.search(encoded) and _cleaned(value) != value:
        return "not storable: a string holds a NUL character or a lone surrogate, which PostgreSQL refuses"
    return None


def _clean(value: str) -> str:
    if "\x00" in value:
        value = value.replace("\x00", REPLACEMENT)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def _cleaned(value: Any) -> Any:
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, dict):
        return {_clean(str(key)): _cleaned(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_cleaned(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_cleaned(item) for item in value)
    return value


def _marker(why: str, value: Any) -> dict[str, str]:
    try:
        preview = repr(value)
    except Exception as error:  # noqa: BLE001 - a broken __repr__ must not lose the job's end
        preview = f"<repr failed: {type(error).__name__}>"
    return {"not_stored": text(why, PREVIEW) or "", "preview": text(preview, PREVIEW) or ""}
