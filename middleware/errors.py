"""Errors raised from Dramatiq's hooks.

They derive from MiddlewareError: Dramatiq swallows any other exception raised in a hook, and a
refused send must reach the caller of send() with nothing published.
"""

from __future__ import annotations

from dramatiq.errors import Retry
from dramatiq.middleware import MiddlewareError

from db.errors import JobError, KeyTaken, UnknownCourse, UnknownUser
from db.excerpt import clipped


def one_line(error: BaseException) -> str:
    """The first line of an error's message, or its type when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class JobRejected(JobError, MiddlewareError):
    """A send was refused: nothing was written and nothing was published."""


class InvalidArguments(JobRejected):
    def __init__(self, job_type: str, problem: str) -> None:
        # Clipped again: a problem may quote what the sender gave.
        super().__init__(f"invalid arguments for {clipped(job_type, 100)}: {clipped(problem)}")


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


class KeyTakenRejected(JobRejected, KeyTaken):
    """A send whose idempotency key its user gave to a job of another type (catch it as KeyTaken)."""


class JobNotRecorded(JobRejected):
    """The pending row could not be written, so the message was not published."""


class SendInTransaction(JobRejected):
    def __init__(self) -> None:
        super().__init__(
            "a job can't be sent inside an open transaction of this thread's database connection: "
            "its row would stay invisible to the workers until that transaction commits, and a worker "
            "could take the message first. Send it after the commit (or from another thread)."
        )


class AlreadySent(JobError, MiddlewareError):
    """The send's idempotency key names a job its user sent before: that job stands for this
    send, which wrote and published nothing. jobs.service returns the first job's id instead."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"a job with this key was sent before: {job_id}")
        self.job_id = job_id


class JobNotPublished(JobError):
    """The jobs are recorded (their pending rows are committed) but the broker could not take
    their messages: they will be sent when it is back (reconcile, in every worker, publishes
    waiting jobs that the broker lacks). Sending them again would make second jobs; a send with
    an idempotency key can safely be repeated instead.

    Attributes:
      job_ids(list[str]): the jobs recorded and maybe not published, in the order sent.
    """

    def __init__(self, job_ids: list[str], cause: BaseException) -> None:
        which = f"job {job_ids[0]} is" if len(job_ids) == 1 else f"{len(job_ids)} jobs ({job_ids[0]} ...) are"
        it = "it" if len(job_ids) == 1 else "they"
        reason = one_line(cause)
        super().__init__(
            f"{which} recorded but the broker is unreachable ({reason}): {it} will be sent when the broker is back"
        )
        self.job_ids = job_ids

    @property
    def job_id(self) -> str:
        return self.job_ids[0]


class JobStartNotRecorded(MiddlewareError, Retry):
    """The start of a job could not be recorded, so the job did not run; its message is handed back.

    A Retry too, only so that Dramatiq's worker does not log it as an unhandled error; JobRetries
    leaves it alone (middleware/retry_policy.py)."""
