"""What PostgreSQL can store: text without NUL characters or lone surrogates, JSON without NaN,
values of a bounded size.

A job's own output (its result, its error) is made storable here, so that the end of every
attempt is recorded whatever the job returned or raised: a NUL becomes U+FFFD, an overlong text
is cut with a note that says so, and a result that can't be stored whole is replaced by a marker
that says why. A job's arguments are never rewritten: a send whose arguments can't be stored is
refused instead (`problem`, `arguments_problem`).

How much may be stored is bounded (`StorageLimits`, set from the JOBS_MAX_... settings by whoever
configures the system): what a sender gives over a limit is refused, what a job returns or
raises over one is cut or replaced by a marker.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

PREVIEW = 500
REPLACEMENT = "\ufffd"

# What json.dumps writes for a NUL or a surrogate: jsonb refuses both.
_UNSTORABLE_ESCAPE = re.compile(r"\\u(0000|d[89a-f])", re.IGNORECASE)
# The same in text itself: NUL, and the lone surrogates that UTF-8 can't encode.
_UNSTORABLE_TEXT = re.compile("[\x00\ud800-\udfff]")


@dataclass(frozen=True)
class StorageLimits:
    """How much of each thing is stored; each is the setting of the same name, upper-cased with
    JOBS_ before it (middleware/settings.py), and the messages name it so."""

    #: A job's arguments: bytes of their JSON, and how deep an argument may nest lists and objects.
    max_args_bytes: int = 1_000_000
    max_args_depth: int = 32
    #: Bytes of a result's JSON: a larger one is replaced by a marker.
    max_result_bytes: int = 1_000_000
    #: Characters of an error's message and of its stack: longer ones are cut, saying so.
    max_error_message_chars: int = 4_000
    max_error_stack_chars: int = 16_000
    #: Characters of a cancel request's reason: a longer one is refused.
    max_reason_chars: int = 10_000
    #: The longest delay of a send: 7 days (Dramatiq's Redis broker refuses longer ones anyway).
    max_delay_ms: int = 7 * 24 * 3_600_000


#: What the database itself refuses past, whoever writes (0017_stored_limits.sql: its ceilings,
#: by the same names): the limits above may be configured up to these, not beyond.
CEILINGS = StorageLimits(
    max_args_bytes=16_000_000,
    max_args_depth=100,
    max_result_bytes=16_000_000,
    max_error_message_chars=40_000,
    max_error_stack_chars=160_000,
    max_reason_chars=100_000,
    max_delay_ms=70 * 24 * 3_600_000,
)
#: How deep a result may nest lists and objects: deeper, it is stored as a marker (the database's
#: ceiling, as for arguments).
MAX_RESULT_DEPTH = CEILINGS.max_args_depth
#: Bytes of JSON of a job's options (what a message was sent with): more is refused.
MAX_OPTIONS_BYTES = 1_000_000
#: Characters of a progress report's message: a longer one is stored cut (the database's
#: ceiling is ten times this).
MAX_PROGRESS_MESSAGE_CHARS = 1_000

_limits = StorageLimits()


def configure(limits: StorageLimits) -> None:
    global _limits
    _limits = limits


def limits() -> StorageLimits:
    return _limits


def text(value: str | None, limit: int, *, keep_end: bool = False) -> str | None:
    """`value` as PostgreSQL can store it, at most `limit` characters with the note that says it
    was cut (the end of it with keep_end: the end of a stack is where the error is). A text cut
    once is left as it is when given again."""
    if value is None:
        return None
    value = _clean(value)
    if len(value) > limit:
        note = f"[{len(value)} characters, cut to {limit}]"
        keep = max(0, limit - len(note) - 4)
        value = f"{note} ...{value[-keep:] if keep else ''}" if keep_end else f"{value[:keep]}... {note}"
    return value


def json_value(value: Any, max_bytes: int | None = None) -> Any:
    """A JSON value PostgreSQL can store: `value` itself, with NUL characters replaced, or, when
    it is not JSON (NaN, an object) or too large, a marker that says why and shows its start."""
    max_bytes = _limits.max_result_bytes if max_bytes is None else max_bytes
    try:
        encoded = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as error:
        return _marker(f"not JSON: {error}", value)
    if _UNSTORABLE_ESCAPE.search(encoded):
        value = _cleaned(value)
        encoded = json.dumps(value)
    if len(encoded) > max_bytes:
        return _marker(
            f"{len(encoded)} bytes of JSON, more than the {max_bytes} a result may take (JOBS_MAX_RESULT_BYTES)", value
        )
    if nesting(value, MAX_RESULT_DEPTH) > MAX_RESULT_DEPTH:
        return _marker(f"nested more than {MAX_RESULT_DEPTH} deep, deeper than the database stores", value)
    return value


def progress_message(value: str | None) -> str | None:
    return text(value, MAX_PROGRESS_MESSAGE_CHARS)


def error_message(value: str | None) -> str | None:
    return text(value, _limits.max_error_message_chars)


def error_stack(value: str | None) -> str | None:
    """The end of a stack is kept: that is where the error is."""
    return text(value, _limits.max_error_stack_chars, keep_end=True)


def arguments_problem(args: list[Any], kwargs: dict[str, Any]) -> str | None:
    """Why a job's arguments can't be stored, or None: nested too deep (checked without recursion,
    before anything walks them), too large, or not storable as they are (`problem`)."""
    if any(nesting(value, _limits.max_args_depth) > _limits.max_args_depth for value in (*args, *kwargs.values())):
        return f"nested more than {_limits.max_args_depth} deep (JOBS_MAX_ARGS_DEPTH)"
    try:
        size = len(json.dumps({"args": args, "kwargs": kwargs}, allow_nan=False).encode("utf-8", "replace"))
    except (TypeError, ValueError, RecursionError) as error:
        return f"not storable as JSON ({error})"
    if size > _limits.max_args_bytes:
        return f"{size} bytes of JSON, more than the {_limits.max_args_bytes} allowed (JOBS_MAX_ARGS_BYTES)"
    return problem({"args": args, "kwargs": kwargs})


def options_problem(options: dict[str, Any]) -> str | None:
    """Why a job's options (those kept in its row) can't be stored, or None: nested too deep
    (checked first, without recursion), not storable as they are, or too large."""
    depth = CEILINGS.max_args_depth
    if any(nesting(value, depth) > depth for value in options.values()):
        return f"nested more than {depth} deep, deeper than the database stores"
    found = problem(options)
    if found is not None:
        return found
    size = len(json.dumps(options).encode("utf-8", "replace"))
    if size > MAX_OPTIONS_BYTES:
        return f"{size} bytes of JSON, more than the {MAX_OPTIONS_BYTES} the database stores"
    return None


#: The longest operator's name (job_cancel_by in 0010_sends.sql).
MAX_OPERATOR_CHARS = 200


def reason_problem(reason: str | None) -> str | None:
    """Why a cancel request's reason is refused, or None."""
    if reason is not None and len(reason) > _limits.max_reason_chars:
        return (
            f"the reason is {len(reason)} characters long, more than the {_limits.max_reason_chars} "
            "allowed (JOBS_MAX_REASON_CHARS)"
        )
    if reason is not None and _UNSTORABLE_TEXT.search(reason):
        return "the reason holds a NUL character or a lone surrogate, which PostgreSQL can't store"
    return None


def operator_problem(operator: object) -> str | None:
    """Why an operator's name is refused, or None: a name, 1 to MAX_OPERATOR_CHARS characters."""
    if not isinstance(operator, str) or not operator.strip():
        return "an operator's cancellation needs the operator's name"
    if len(operator) > MAX_OPERATOR_CHARS or _UNSTORABLE_TEXT.search(operator):
        return f"an operator's name is 1 to {MAX_OPERATOR_CHARS} characters of text"
    return None


def nesting(value: Any, stop_at: int | None = None) -> int:
    """How deep lists, tuples and dicts nest in `value` (0 for a scalar), found without recursion;
    with `stop_at`, no deeper than that (a value that holds itself nests without end)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if stop_at is not None and depth > stop_at:
            return depth
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


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
