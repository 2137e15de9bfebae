"""Errors of the storage layer, each with a message that says what to fix.

They carry no Dramatiq type: the middleware turns the ones a send can hit into refusals that
Dramatiq lets through to the caller of send() (middleware/errors.py).
"""

from __future__ import annotations

from .excerpt import token


class JobError(Exception):
    """Base of every error of this system that a caller can act on."""


class DatabaseUnavailable(JobError):
    """The database could not be reached before the deadline."""


class InvalidDatabaseUrl(JobError):
    """A database URL that libpq can't parse (its password masked in the message)."""


class UnknownUser(JobError):
    def __init__(self, user_id: object) -> None:
        super().__init__(f"unknown user {token(user_id)}")
        self.user_id = user_id


class UnknownCourse(JobError):
    def __init__(self, course_id: object, user_id: object) -> None:
        super().__init__(f"course {course_id} does not exist in the organization of user {user_id}")
        self.course_id, self.user_id = course_id, user_id


class KeyTaken(JobError):
    """An idempotency key given to a job of another type: a key names one job."""

    def __init__(self, key: str, job_id: str, job_type: str) -> None:
        super().__init__(f"the key {key!r} was given to job {job_id}, of type {job_type}: a key names one job")
        self.key, self.job_id, self.job_type = key, job_id, job_type


class LimitExceeded(JobError):
    """Something given is over one of the limits on what is stored (db.storable.StorageLimits):
    refused, nothing written. The message names the limit's setting."""


class ScopeError(RuntimeError):
    """as_user() was entered inside a transaction, whose identity would outlive the scope."""


class MigrationChanged(JobError):
    def __init__(self, name: str) -> None:
        super().__init__(f"migration {name} changed after it was applied: add a new migration instead")
