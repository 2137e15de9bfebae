"""The errors a caller can get, each with a message that says what to fix.

Errors raised from a Dramatiq hook derive from MiddlewareError: Dramatiq swallows any other
exception there, and a refused send must reach the caller of send() with nothing published.
"""

from __future__ import annotations

from dramatiq.middleware import MiddlewareError


class JobError(Exception):
    """Base of every error of this system that a caller can act on."""


class JobRejected(JobError, MiddlewareError):
    """A send was refused: nothing was written and nothing was published."""


class UnknownJobType(JobRejected):
    def __init__(self, job_type: str, known: list[str]) -> None:
        super().__init__(f"unknown job type {job_type!r} (known: {', '.join(sorted(known))})")


class InvalidArguments(JobRejected):
    def __init__(self, job_type: str, problem: str) -> None:
        super().__init__(f"invalid arguments for {job_type}: {problem}")


class MissingOwner(JobRejected):
    def __init__(self, job_type: str) -> None:
        super().__init__(
            f"{job_type} was sent without an owner: send it through jobs.service.send_job "
            "(or pass job_owner={'user_id': ...} in its options)"
        )


class UnknownUser(JobRejected):
    def __init__(self, user_id: object) -> None:
        super().__init__(f"unknown user {user_id}")


class UnknownCourse(JobRejected):
    def __init__(self, course_id: object, user_id: object) -> None:
        super().__init__(f"course {course_id} does not exist in the organization of user {user_id}")


class JobNotRecorded(JobRejected):
    """The pending row could not be written, so the message was not published."""


class JobStartNotRecorded(MiddlewareError):
    """The start of a job could not be recorded, so the job did not run."""


class JobNotFound(JobError):
    def __init__(self, job_id: object) -> None:
        super().__init__(f"no job with id {job_id}")


class PermissionDenied(JobError):
    def __init__(self, user_id: object, job_id: object) -> None:
        super().__init__(
            f"user {user_id} may not cancel job {job_id}: only its owner or an admin of its organization may"
        )


class JobAlreadyFinished(JobError):
    def __init__(self, job_id: object, status: str) -> None:
        super().__init__(f"job {job_id} is already {status} and can no longer be cancelled")
