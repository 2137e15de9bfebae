"""What services call: send and cancel a job, read its status, list jobs, read a job's history.

Every read and every cancellation is made on behalf of a user, under PostgreSQL's row-level
security (db.scope): a user sees their own jobs, an admin every job of their organization, and
nobody another organization's. Operators' views of every tenant are in db.queries.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from dramatiq import Actor

from db.excerpt import excerpt
from middleware.arguments import check_arguments, check_delay
from middleware.errors import AlreadySent
from middleware.options import OWNER
from middleware.publish import publish_many, recorded_before
from middleware.sends import SendRecorder

from .cancellation import Cancellation, cancel_job, cancel_job_as_operator
from .errors import InvalidArguments, UnknownJobType
from .reads import get_job, job_history, list_jobs, show_job
from .retry import Retried, retry_job

__all__ = [
    "Cancellation",
    "Retried",
    "cancel_job",
    "cancel_job_as_operator",
    "get_job",
    "job_history",
    "list_jobs",
    "retry_job",
    "send_job",
    "send_jobs",
    "show_job",
]


def send_job(
    job_type: str,
    *,
    user_id: object,
    args: dict[str, Any] | None = None,
    delay_ms: int | None = None,
    key: str | None = None,
) -> str:
    """Sends a job for `user_id`; returns its id once its `pending` row is committed.

    With a `key` (1 to 200 characters, unique per user), a send repeated with the same key
    returns the first job's id and sends nothing, whatever became of that job: a caller that
    doesn't know whether its send went through sends again with the same key.

    Raises a JobRejected error (nothing written, nothing published) for an unknown job type,
    arguments the job can't take, an unknown user, a course outside the user's organization, or
    an unreachable database; and JobNotPublished (its `job_id` says which) when the job is
    recorded but the broker is unreachable: it will be sent when the broker is back, and
    sending it again without a key would make a second job.
    """
    actor = _actor(job_type, delay_ms)
    args = _arguments(job_type, args)
    message = actor.message_with_options(kwargs=args, **{OWNER: _owner(user_id, args, key)})
    try:
        with recorded_before([message.message_id]):
            actor.broker.enqueue(message, delay=delay_ms)
    except AlreadySent as first:
        return first.job_id
    return message.message_id


def send_jobs(
    job_type: str,
    jobs: Iterable[dict[str, Any] | None],
    *,
    user_id: object,
    delay_ms: int | None = None,
    keys: Sequence[str | None] | None = None,
) -> list[str]:
    """Sends many jobs of one type for `user_id`, one per item of `jobs` (each the arguments of
    one job); returns their ids, in order. `keys`, if given, holds one idempotency key (or None)
    per job, as send_job's `key`: a job whose key was used before is that earlier job, and
    only the others are published.

    The pending rows of the whole batch are committed in one round trip before any message is
    published (on Redis, all in one more round trip), with send_job's guarantees for the batch
    as a whole: if any job is refused, none is written and none is published. If the broker
    can't take them, JobNotPublished carries the ids of the jobs recorded: they will be sent when
    it is back.
    """
    actor = _actor(job_type, delay_ms)
    validate = actor.options.get("validate")
    jobs = list(jobs)
    keys = [None] * len(jobs) if keys is None else list(keys)
    if len(keys) != len(jobs):
        raise InvalidArguments(job_type, f"{len(keys)} keys were given for {len(jobs)} jobs: give one per job")
    messages = []
    for args, key in zip(jobs, keys, strict=True):
        args = _arguments(job_type, args)
        check_arguments(actor.actor_name, actor.fn, validate, (), args)
        messages.append(actor.message_with_options(kwargs=args, **{OWNER: _owner(user_id, args, key)}))
    broker = actor.broker
    recorder = next((m for m in broker.middleware if isinstance(m, SendRecorder)), None)
    if recorder is None:
        raise RuntimeError(f"the broker of {job_type} has no SendRecorder: jobs would not be recorded")
    ids = recorder.record_batch(broker, messages, delay_ms)
    new = [message for message, job_id in zip(messages, ids, strict=True) if job_id == message.message_id]
    with recorded_before(ids):
        publish_many(broker, new, delay_ms)
    return ids


def _actor(job_type: str, delay_ms: int | None) -> Actor:
    from actors import JOB_TYPES

    actor = JOB_TYPES.get(job_type)
    if actor is None:
        raise UnknownJobType(job_type, list(JOB_TYPES))
    check_delay(job_type, delay_ms)
    return actor


def _arguments(job_type: str, args: dict[str, Any] | None) -> dict[str, Any]:
    if args is None:
        return {}
    if not isinstance(args, dict):
        raise InvalidArguments(job_type, f"arguments must be an object of named values, not {excerpt(args)}")
    return args


def _owner(user_id: object, args: dict[str, Any], key: str | None) -> dict[str, Any]:
    owner = {"user_id": str(user_id), "course_id": args.get("course_id")}
    if key is not None:
        owner["key"] = key
    return owner
