"""What the subcommands share: errors with their exit codes, JSON output, how times and text are
printed, and finding the users, organizations and jobs that an operator names."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from db.excerpt import excerpt, token
from middleware.settings import Settings

from ..errors import JobError, JobNotFound

EXIT_ERROR = 1
EXIT_USAGE = 2

T = TypeVar("T")

# Stored text is the users' and the jobs' (a reason, an error, an email), not ours: a character
# a terminal would obey (a newline, an escape sequence, a bidi override) could forge lines or
# repaint an operator's screen. Human output writes each one out as an escape, visibly.
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


class UsageError(JobError):
    pass


class Failure(Exception):
    """An error the command reports with its own exit code (JobError and ValueError mean 2)."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def connect(settings: Settings) -> None:
    import db

    db.configure(settings.database_url, settings.db_limits())


def format_time(value: datetime | None) -> str:
    """A moment as every command prints it: the day, the time to the second, and the time zone
    (this machine's, by its name: `2026-11-29 14:03:07 UTC`)."""
    if value is None:
        return "-"
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def format_age(seconds: float) -> str:
    """A duration in one unit, rounded down: 42s, 12m, 5h, 3d."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def since_moment(value: str) -> datetime | timedelta:
    """`--since`: a duration back from now (10m, 2h, 3d, 45s, 1w) or an ISO time (without a time
    zone: this machine's)."""
    found = re.fullmatch(r"(\d+)([smhdw])", value.strip())
    if found:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[found[2]]
        return timedelta(**{unit: int(found[1])})
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise UsageError(f"--since takes a duration (10m, 2h, 3d) or an ISO time, not {excerpt(value)}") from None
    return moment if moment.tzinfo else moment.astimezone()


def printable(text: str) -> str:
    """`text` on one line and inert: every character that is not printable written out as its
    escape (a newline as `\\n`, ESC as `\\x1b`, U+202E as `\\u202e`). Printable text is
    returned as it is, so that this can be applied again."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escape(char) for char in text)


def _escape(char: str) -> str:
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def one_line(text: str | None) -> str:
    """The first line of `text` (a multi-line error's summary), printable. Only a newline ends a
    line: a carriage return or any other character that Python takes for a line break is shown,
    not obeyed."""
    return printable((text or "").strip().partition("\n")[0].removesuffix("\r"))


def clip(text: str, width: int) -> str:
    """`text` cut to `width` characters, the last of them an ellipsis when it was cut."""
    if len(text) <= width:
        return text
    return (text[: width - 1] + "…") if width > 0 else ""


def terminal_width() -> int:
    """The terminal's width; 80 when stdout is not a terminal (a pipe, a file), or $COLUMNS."""
    return shutil.get_terminal_size((80, 24)).columns


def public_queue(queue: str | None) -> str | None:
    """The queue's name as its actor declares it: a delayed message is recorded in Dramatiq's
    internal delay queue (`default.DQ`)."""
    return queue.removesuffix(".DQ") if queue else queue


def in_scope(viewer: str | None, read: Callable[[], T]) -> T:
    """Runs `read` as `viewer` (a user id: db.scope, row-level security), or with the rights of
    the operator's connection, which sees every tenant, when there is no viewer."""
    if viewer is None:
        return read()
    from db import scope

    with scope.as_user(viewer):
        return read()


def find_user(value: str, viewer: str | None = None, *, option: str = "--as") -> dict[str, Any]:
    """The user with this email or id (as `viewer` may see users); a UsageError naming the user
    as typed otherwise, and one naming `option` for an empty or blank value (an unset variable in
    a script: never taken for anyone)."""
    from db import queries

    if not value.strip():
        raise UsageError(f"{option} needs a user's email or id, not an empty value")
    user = in_scope(viewer, lambda: queries.find_user(value))
    if user is None:
        raise UsageError(f"no user {token(value)}")
    return user


def resolve_user(value: str, viewer: str | None = None) -> str:
    """The id of the user with this email or id (as `viewer` may see users)."""
    return str(find_user(value, viewer)["id"])


def resolve_organization(value: str, viewer: str | None = None) -> str:
    """The id of the organization with this name or id (as `viewer` may see organizations)."""
    from db import queries

    organization = in_scope(viewer, lambda: queries.find_organization(value))
    if organization is None:
        raise UsageError(f"no organization {token(value)}")
    return str(organization["id"])


def resolve_job_id(value: str, viewer: str | None, *, acting_in: object = None) -> str:
    """A job's full id from what was typed: the full id (returned as it is, without a lookup), or
    the beginning of one, 8 hex digits at least, that begins the id of exactly one job that
    `viewer` (a user id; None: the operator) may see; or, `acting_in` an organization (a cancel,
    a retry: the viewer's), of one job of that organization, which the request itself then
    judges (a member asking for a colleague's job is refused and recorded, as with the full id).

    Raises JobNotFound when no job matches, and UsageError for an ambiguous beginning or for
    something that is not one.
    """
    from db import queries

    full = queries.parse_uuid(value)
    if full is not None:
        return str(full)
    try:
        if acting_in is not None:
            matches = queries.job_ids_with_prefix(value, limit=2, organization_id=acting_in)
        else:
            matches = in_scope(viewer, lambda: queries.job_ids_with_prefix(value, limit=2))
    except ValueError:
        raise UsageError(
            f"not a job id: {excerpt(value)} (give the full id, or at least its first {queries.MIN_PREFIX} hex digits)"
        ) from None
    if not matches:
        raise JobNotFound(value)
    if len(matches) > 1:
        raise UsageError(f"job id {token(value)} is ambiguous: more than one job id begins with it (give more digits)")
    return matches[0]


def user_emails(user_ids: list[Any], viewer: str | None) -> dict[str, str]:
    """Emails by user id, of the users `viewer` may see."""
    from db import queries

    wanted = [user for user in user_ids if user is not None]
    return in_scope(viewer, lambda: queries.user_emails(wanted)) if wanted else {}
