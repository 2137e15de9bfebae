"""Every error a caller of this system can get, each with a message that says what to fix.

They are defined in the layer that raises them (db/errors.py, middleware/errors.py) and gathered
here, so that a service catches them from one place.
"""

from __future__ import annotations

from db.errors import (
    DatabaseUnavailable,
    JobError,
    KeyTaken,
    LimitExceeded,
    MigrationChanged,
    UnknownCourse,
    UnknownUser,
)
from db.excerpt import excerpt, token
from middleware.errors import (
    InvalidArguments,
    JobNotPublished,
    JobNotRecorded,
    JobRejected,
    JobStartNotRecorded,
    MissingOwner,
    SendInTransaction,
)

__all__ = [
    "DatabaseUnavailable",
    "InvalidArguments",
    "JobAlreadyFinished",
    "JobError",
    "JobNotFound",
    "JobNotPublished",
    "JobNotRecorded",
    "JobNotRetryable",
    "JobRejected",
    "JobStartNotRecorded",
    "KeyTaken",
    "LimitExceeded",
    "MigrationChanged",
    "MissingOwner",
    "PermissionDenied",
    "SendInTransaction",
    "UnknownCourse",
    "UnknownJobType",
    "UnknownUser",
]


class UnknownJobType(JobRejected):
    def __init__(self, job_type: str, known: list[str]) -> None:
        super().__init__(f"unknown job type {excerpt(job_type)} (known: {', '.join(sorted(known))})")


class JobNotFound(JobError):
    def __init__(self, job_id: object) -> None:
        super().__init__(f"no job with id {token(job_id)}")


class PermissionDenied(JobError):
    def __init__(self, user_id: object, job_id: object, action: str = "cancel") -> None:
        super().__init__(
            f"user {token(user_id)} may not {action} job {token(job_id)}: only its owner or an admin of its organization may"
        )


class JobNotRetryable(JobError):
    def __init__(self, job_id: object, status: str) -> None:
        super().__init__(f"job {job_id} is {status}: only a failed or cancelled job can be retried")


class JobAlreadyFinished(JobError):
    def __init__(self, job_id: object, status: str) -> None:
        super().__init__(f"job {job_id} is already {status} and can no longer be cancelled")
