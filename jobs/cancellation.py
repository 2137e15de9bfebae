"""Cancelling a job: authorized and recorded in PostgreSQL, then interrupted through dramatiq-abort."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog
from dramatiq_abort import abort
from dramatiq_abort.middleware import AbortMode

from db import transitions
from db.queries import parse_uuid
from db.scope import as_user

from .errors import JobAlreadyFinished, JobNotFound, PermissionDenied

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


def cancel_job(job_id: object, requested_by: object, reason: str | None = None) -> Cancellation:
    """Cancels a job on behalf of `requested_by`, who must own it or be an admin of its organization.

    The request runs as that user (db.scope.as_user): a job of another organization is not
    found, as it is for get_job.

    A waiting job (pending, retrying, delayed) will never run: its row is cancelled, and every
    later delivery of its message is skipped, however late. A running job's row is cancelled at
    once and its worker thread is interrupted; it is never retried. Raises JobNotFound,
    UnknownUser, PermissionDenied or JobAlreadyFinished; refusals are recorded as events.
    """
    key = parse_uuid(job_id)
    if key is None:
        raise JobNotFound(job_id)
    bound = log.bind(job_id=str(key), requested_by=str(requested_by), write="awaited")
    bound.info("cancel_requested", reason=reason)
    with as_user(requested_by):
        outcome = transitions.cancel(str(key), reason)
    return _settled(outcome, bound, job_id, requested_by)


def cancel_job_as_operator(job_id: object, operator: str, reason: str | None = None, *, admin_url: str) -> Cancellation:
    """Cancels a job as an operator (platform staff, not a user of its organization): the same
    change and interruption as cancel_job, recorded with the operator's name in its event. It
    runs as an administrator of the database (`admin_url`): workers and users can't. Raises
    JobNotFound or JobAlreadyFinished."""
    key = parse_uuid(job_id)
    if key is None:
        raise JobNotFound(job_id)
    bound = log.bind(job_id=str(key), operator=operator, write="awaited")
    bound.info("cancel_requested", reason=reason)
    outcome = transitions.cancel_by_operator(admin_url, str(key), operator, reason)
    return _settled(outcome, bound, job_id, operator)


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
    interrupting = outcome.previous == "active"
    if interrupting:
        # The row already says cancelled, so this only stops the work sooner: if the abort is
        # lost or expires, the attempt's end is refused and no later delivery runs.
        abort(key, mode=AbortMode.ABORT)
    bound.info("cancel_granted", interrupting=interrupting)
    return Cancellation(key, "cancelled", outcome.previous, interrupting)
