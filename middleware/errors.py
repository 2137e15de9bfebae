"""Errors raised from Dramatiq's hooks.

They derive from MiddlewareError: Dramatiq swallows any other exception raised in a hook, and a
refused send must reach the caller of send() with nothing published.
"""

from __future__ import annotations

from dramatiq.errors import Retry
from dramatiq.middleware import MiddlewareError

from db.errors import JobError, UnknownCourse, UnknownUser


class JobRejected(JobError, MiddlewareError):
    """A send was refused: nothing was written and nothing was published."""


class InvalidArguments(JobRejected):
    def __init__(self, job_type: str, problem: str) -> None:
        super().__init__(f"invalid arguments for {job_type}: {problem}")


class MissingOwner(JobRejected):
    def __init__(self, job_type: str) -> None:
        super().__init__(
            f"{job_type} was sent without an owner: send it through jobs.service.send_job "
            "(or pass job_owner={'user_id': ...} in its options)"
        )


class UnknownUserRejected(JobRejected, UnknownUser):
    """A send for a user who does not exist (catch it as UnknownUser or JobRejected)."""


class UnknownCourseRejected(JobRejected, UnknownCourse):
    """A send for a course outside its user's organization (catch it as UnknownCourse)."""


class JobNotRecorded(JobRejected):
    """The pending row could not be written, so the message was not published."""


class SendInTransaction(JobRejected):
    def __init__(self) -> None:
        super().__init__(
            "a job can't be sent inside an open transaction of this thread's database connection: "
            "its row would stay invisible to the workers until that transaction commits, and a worker "
            "could take the message first. Send it after the commit (or from another thread)."
        )


class JobStartNotRecorded(MiddlewareError, Retry):
    """The start of a job could not be recorded, so the job did not run; its message is handed back.

    A Retry too, only so that Dramatiq's worker does not log it as an unhandled error; JobRetries
    leaves it alone (middleware/retry_policy.py)."""
