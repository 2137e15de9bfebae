"""Cancelling a job: authorized and recorded in PostgreSQL, then interrupted through dramatiq-abort."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog
from dramatiq_abort import abort
from dramatiq_abort.middleware import AbortMode

from db import storable, transitions
from db.connection import Limits
from db.excerpt import excerpt
from db.queries import parse_uuid
from db.scope import as_user
from middleware.errors import one_line
from middleware.publish import BROKER_ERRORS

from .errors import JobAlreadyFinished, JobNotFound, LimitExceeded, PermissionDenied

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Cancellation:
    job_id: str
    #: 'cancelled' (now) or 'already_cancelled' (nothing changed).
    outcome: str
    #: The status the job had when the request came.
    previous: str
    #: True when the job was running: an abort was sent to its worker.
    interrupting: bool
    #: Why the abort of a running job could not be sent (the broker unreachable): the row is
    #: cancelled all the same, so the job runs on to its end, whose write is refused.
    abort_error: str | None = None


def cancel_job(job_id: object, requested_by: object, reason: str | None = None) -> Cancellation:
    """Cancels a job on behalf of `requested_by`, who must own it or be an admin of its organization.

    The request runs as that user (db.scope.as_user): a job of another organization is not
    found, as it is for get_job.

    A waiting job (pending, retrying, delayed) will never run: its row is cancelled, and every
    later delivery of its message is skipped, however late. A running job's row is cancelled at
    once and its worker thread is interrupted; it is never retried. Raises JobNotFound,
    UnknownUser, PermissionDenied or JobAlreadyFinished; refusals are recorded as events. A
    reason over JOBS_MAX_REASON_CHARS is refused (LimitExceeded) before anything is written.
    """
    _check_reason(reason)
    key = parse_uuid(job_id)
    if key is None:
        raise JobNotFound(job_id)
    bound = log.bind(job_id=str(key), requested_by=excerpt(requested_by), write="awaited")
    bound.info("cancel_requested", reason=_logged(reason))
    with as_user(requested_by):
        outcome = transitions.cancel(str(key), reason)
    return _settled(outcome, bound, job_id, requested_by)


def cancel_job_as_operator(
    job_id: object, operator: str, reason: str | None = None, *, admin_url: str, limits: Limits | None = None
) -> Cancellation:
    """Cancels a job as an operator (platform staff, not a user of its organization): the same
    change and interruption as cancel_job, recorded with the operator's name in its event. It
    runs as an administrator of the database (`admin_url`): workers and users can't. Raises
    JobNotFound, JobAlreadyFinished or LimitExceeded (the reason too long, the name blank or
    too long)."""
    _check_reason(reason)
    problem = storable.operator_problem(operator)
    if problem is not None:
        raise LimitExceeded(f"cancel refused: {problem}")
    key = parse_uuid(job_id)
    if key is None:
        raise JobNotFound(job_id)
    bound = log.bind(job_id=str(key), operator=excerpt(operator), write="awaited")
    bound.info("cancel_requested", reason=_logged(reason))
    outcome = transitions.cancel_by_operator(admin_url, limits or Limits(), str(key), operator, reason)
    return _settled(outcome, bound, job_id, operator)


def _check_reason(reason: str | None) -> None:
    problem = storable.reason_problem(reason)
    if problem is not None:
        raise LimitExceeded(f"cancel refused: {problem}")


def _logged(reason: str | None) -> str | None:
    """The reason as a log line shows it: the row keeps it whole, the logs go further."""
    return None if reason is None else excerpt(reason, 200)


def _settled(outcome: transitions.Outcome, bound: Any, job_id: object, requested_by: object) -> Cancellation:
    """The answer to a cancel request, logged; a running job's worker is told to interrupt it."""
    key = str(parse_uuid(job_id))
    bound = bound.bind(previous=outcome.previous, outcome=outcome.outcome)
    if outcome.outcome == "missing":
        bound.warning("cancel_refused", why="no such job")
        raise JobNotFound(job_id)
    if outcome.outcome == "forbidden":
        bound.warning("cancel_refused", why="not the owner nor an admin of its organization")
        raise PermissionDenied(requested_by, job_id)
    if outcome.outcome == "finished":
        bound.warning("cancel_refused", why="finished")
        raise JobAlreadyFinished(job_id, outcome.status)
    if outcome.outcome == "already_cancelled":
        bound.info("cancel_repeated")
        return Cancellation(key, "already_cancelled", outcome.previous, interrupting=False)
    if outcome.previous != "active":
        bound.info("cancel_granted", interrupting=False)
        return Cancellation(key, "cancelled", outcome.previous, interrupting=False)
    # The row already says cancelled, so this only stops the work sooner: if the abort is lost,
    # expires or can't be sent, the attempt's end is refused and no later delivery runs.
    try:
        abort(key, mode=AbortMode.ABORT)
    except BROKER_ERRORS as error:
        reason = one_line(error)
        bound.warning("cancel_granted", interrupting=False, abort_error=reason)
        return Cancellation(key, "cancelled", outcome.previous, interrupting=False, abort_error=reason)
    bound.info("cancel_granted", interrupting=True)
    return Cancellation(key, "cancelled", outcome.previous, interrupting=True)
