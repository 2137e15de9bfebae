"""Retrying a failed or cancelled job: a new job, linked to the old one both ways."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import structlog

from db import transitions
from db.queries import parse_uuid
from db.scope import as_user
from middleware.options import OWNER, PUBLISH_ONLY, RECORDED
from middleware.publish import recorded_before

from .errors import JobNotFound, JobNotRetryable, PermissionDenied, UnknownJobType

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Retried:
    #: The retry: a new job, or the one an earlier request made.
    job_id: str
    #: The job retried.
    retry_of: str
    #: 'retried' (a new job was sent) or 'already_retried' (nothing new).
    outcome: str


def retry_job(job_id: object, requested_by: object) -> Retried:
    """Sends a failed or cancelled job again, as a new job of the same type, owner, course,
    arguments and options, on behalf of `requested_by`, who must own it or be an admin of its
    organization.

    The new job names the old one (`retry_of`), and the old one gets a 'retried' event naming who
    asked and the new job; both are committed before the new job is published. A job is retried
    once: asking again returns its retry (retry the retry to go on). Raises JobNotFound (another
    organization's job too, as get_job does), UnknownUser, PermissionDenied, JobNotRetryable
    (refusals are recorded as events), or JobNotPublished when the broker is unreachable (the
    retry is recorded and will be sent when it is back).
    """
    from actors import JOB_TYPES

    key = parse_uuid(job_id)
    if key is None:
        raise JobNotFound(job_id)
    new_id = str(uuid.uuid4())
    bound = log.bind(job_id=str(key), requested_by=str(requested_by), write="awaited")
    with as_user(requested_by):
        retry = transitions.retry(str(key), new_id, sorted(JOB_TYPES))
    bound = bound.bind(outcome=retry.outcome, status=retry.status)
    if retry.outcome == "missing":
        bound.warning("retry_refused", why="no such job")
        raise JobNotFound(job_id)
    if retry.outcome == "forbidden":
        bound.warning("retry_refused", why="not the owner nor an admin of its organization")
        raise PermissionDenied(requested_by, job_id, "retry")
    if retry.outcome == "not_retryable":
        bound.warning("retry_refused", why=f"the job is {retry.status}")
        raise JobNotRetryable(job_id, retry.status)
    if retry.outcome == "unknown_type":
        bound.warning("retry_refused", why=f"no actor runs {retry.job_type}")
        raise UnknownJobType(retry.job_type, list(JOB_TYPES))
    assert retry.job_id is not None
    if retry.outcome == "already_retried":
        bound.info("retry_repeated", retry_job_id=retry.job_id)
        return Retried(retry.job_id, str(key), retry.outcome)
    actor = JOB_TYPES[retry.job_type]
    # Its row is committed (the enqueue only publishes it), with these arguments and options.
    message = actor.message_with_options(
        args=tuple(retry.args),
        kwargs=retry.kwargs,
        **retry.options,
        **{OWNER: {"user_id": retry.user_id, "course_id": retry.course_id}},
    ).copy(message_id=new_id)
    message.options[RECORDED] = True  # for its later enqueues (a delay, a retry): the same job
    message.options[PUBLISH_ONLY] = True
    with recorded_before([new_id]):
        actor.broker.enqueue(message)
    bound.info("job_retried", retry_job_id=new_id, transition="-> pending")
    return Retried(new_id, str(key), retry.outcome)
