"""What the subcommands share: errors with their exit codes, JSON output, looking up users."""

from __future__ import annotations

import json
from typing import Any

from middleware.settings import Settings

from ..errors import JobError

EXIT_ERROR = 1
EXIT_USAGE = 2


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


def resolve_user(value: str) -> str:
    """A user id as given, or the id of the user with that email."""
    if "@" not in value:
        return value
    from db.models import User

    user = User.get_or_none(User.email == value)
    if user is None:
        raise UsageError(f"no user with email {value}")
    return str(user.id)
