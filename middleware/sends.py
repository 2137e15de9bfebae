"""Records every send in PostgreSQL before its message reaches the broker."""

from __future__ import annotations

import peewee
import psycopg2.extensions
import structlog
from dramatiq import Broker, Message
from dramatiq.common import q_name
from dramatiq.middleware import Middleware

from db import storable, transitions
from db.connection import database, reconnecting
from db.errors import DatabaseUnavailable, KeyTaken, UnknownCourse, UnknownUser

from .errors import (
    AlreadySent,
    InvalidArguments,
    JobNotRecorded,
    KeyTakenRejected,
    MissingOwner,
    SendInTransaction,
    UnknownCourseRejected,
    UnknownUserRejected,
)
from .options import OWNER, PUBLISH_ONLY, RECORDED, durable
from .retry_policy import max_attempts

log = structlog.get_logger(__name__)

#: The longest idempotency key (job_status_key_check in 0010_sends.sql).
MAX_KEY_LENGTH = 200


class SendRecorder(Middleware):
    """Commits a job's `pending` row before its message is published.

    Guarantees:
      * send() returns only once the job's `pending` row is committed, with the options the job
        was sent with (so that a copy sent again later is the same job); when it can't be
        written, send() raises JobRejected and nothing is published. A batch (record_batch, for
        jobs.service.send_jobs) is committed whole before any of its messages is published.
      * A send inside an open transaction of the thread's connection is refused
        (SendInTransaction): the row would stay invisible to the workers until that commit.
      * Later enqueues of the same job (a delay coming due, a retry) write no new row; a retry's
        due time and options are recorded.

    It must come after the argument check in the broker's middleware list, so that a refused
    send writes nothing.

    Parameters:
      send_deadline_s(float): how long send() retries an unreachable database before it fails.
    """

    def __init__(self, *, send_deadline_s: float = 5.0) -> None:
        self.send_deadline_s = send_deadline_s

    def before_enqueue(self, broker: Broker, message: Message, delay: int | None) -> None:
        # Popped, not read: the option must not travel with the message to its later enqueues.
        if message.options.pop(PUBLISH_ONLY, False):
            return
        if message.options.get(RECORDED):
            if delay is not None:
                self._reschedule(message, delay)
            return
        (recorded,) = self._record_pending(broker, [message], delay)
        first_with_key = recorded.job_id != message.message_id
        log.info(
            "job_enqueued",
            job_id=message.message_id,
            job_type=message.actor_name,
            attempt=0,
            write="awaited",
            transition="-> pending",
            outcome="key_used" if first_with_key else "applied" if recorded.created else "exists",
            delay_ms=delay,
            **({"first_job_id": recorded.job_id} if first_with_key else {}),
        )
        if first_with_key:
            raise AlreadySent(recorded.job_id)
        message.options[RECORDED] = True

    def record_batch(self, broker: Broker, messages: list[Message], delay: int | None) -> list[str]:
        """Commits the pending rows of messages of one actor in one round trip, before any of them
        is published (send_jobs then enqueues them); raises JobRejected, writing nothing, if any
        of them can't be recorded. Returns the job each message stands for, in order: its own id,
        or the user's earlier job with the same key (that message must not be published)."""
        if not messages:
            return []
        owners = [m.options.get(OWNER) or {} for m in messages]
        keyed = [(o.get("user_id"), _key(m.actor_name, o.get("key"))) for o, m in zip(owners, messages, strict=True)]
        repeated = _first_repeated([pair for pair in keyed if pair[1] is not None])
        if repeated is not None:
            raise InvalidArguments(messages[0].actor_name, f"the key {repeated[1]!r} is given to two jobs of the batch")
        recorded = self._record_pending(broker, messages, delay)
        created = sum(r.created for r in recorded)
        for message in messages:
            message.options[RECORDED] = True
            message.options[PUBLISH_ONLY] = True
        log.info(
            "jobs_enqueued",
            job_type=messages[0].actor_name,
            attempt=0,
            write="awaited",
            transition="-> pending",
            count=len(messages),
            created=created,
            delay_ms=delay,
            first_job_id=messages[0].message_id,
            last_job_id=messages[-1].message_id,
        )
        # The ids of a whole batch made one line of 19 kB for 500 jobs: they are at DEBUG only.
        log.debug("jobs_enqueued_ids", job_type=messages[0].actor_name, job_ids=[m.message_id for m in messages])
        return [r.job_id for r in recorded]

    def _record_pending(self, broker: Broker, messages: list[Message], delay: int | None) -> list[transitions.Recorded]:
        """Writes the pending rows of messages of one actor in one statement, retrying an
        unreachable database until the send deadline; returns what each was recorded as. Raises a
        JobRejected error, so that nothing is published, when it can't write them all."""
        if _in_transaction():
            raise SendInTransaction()
        first = messages[0]
        jobs = []
        for message in messages:
            owner = message.options.get(OWNER) or {}
            if not owner.get("user_id"):
                raise MissingOwner(message.actor_name)
            options = durable(message.options)
            problem = storable.options_problem(options)
            if problem is not None:
                raise InvalidArguments(message.actor_name, f"its options are {problem}")
            jobs.append(
                transitions.Pending(
                    message.message_id,
                    owner["user_id"],
                    owner.get("course_id"),
                    list(message.args),
                    message.kwargs,
                    options,
                    _key(message.actor_name, owner.get("key")),
                )
            )

        def insert() -> list[transitions.Recorded]:
            return transitions.record_enqueued_many(
                job_type=first.actor_name,
                # The queue, not its delay queue: RedisBroker renamed a delayed message's copy.
                queue=q_name(first.queue_name),
                max_attempts=max_attempts(broker, first),
                delay_ms=delay,
                jobs=jobs,
            )

        try:
            return reconnecting(insert, what="record_enqueued", deadline_s=self.send_deadline_s)
        except UnknownUser as error:
            raise UnknownUserRejected(error.user_id) from None
        except UnknownCourse as error:
            raise UnknownCourseRejected(error.course_id, error.user_id) from None
        except KeyTaken as error:
            raise KeyTakenRejected(error.key, error.job_id, error.job_type) from None
        except (DatabaseUnavailable, peewee.DatabaseError, peewee.InterfaceError) as error:
            which = (
                f"{first.actor_name} {first.message_id} was"
                if len(messages) == 1
                else (f"{len(messages)} {first.actor_name} jobs were")
            )
            log.error(
                "enqueue_not_recorded",
                job_id=first.message_id if len(messages) == 1 else None,
                job_type=first.actor_name,
                count=len(messages),
                write="awaited",
                transition="-> pending",
                error=str(error).strip(),
            )
            raise JobNotRecorded(f"{which} not sent: {error}") from error

    def _reschedule(self, message: Message, delay: int) -> None:
        try:
            moved = reconnecting(
                lambda: transitions.reschedule(message.message_id, delay, durable(message.options)),
                what="reschedule",
                deadline_s=self.send_deadline_s,
            )
        except (DatabaseUnavailable, peewee.DatabaseError, peewee.InterfaceError) as error:
            # Only the displayed due time is lost; the status itself is already recorded.
            log.warning("reschedule_not_recorded", job_id=message.message_id, write="awaited", error=str(error).strip())
            return
        log.info(
            "job_rescheduled",
            job_id=message.message_id,
            job_type=message.actor_name,
            write="awaited",
            delay_ms=delay,
            outcome="applied" if moved else "not_waiting",
        )


def _key(job_type: str, key: object) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise InvalidArguments(job_type, f"a key must be a string of 1 to {MAX_KEY_LENGTH} characters")
    if "\x00" in key:
        raise InvalidArguments(job_type, "a key can't contain a NUL character")
    return key


def _first_repeated(pairs: list[tuple[object, object]]) -> tuple[object, object] | None:
    seen = set()
    for pair in pairs:
        if pair in seen:
            return pair
        seen.add(pair)
    return None


def _in_transaction() -> bool:
    """Whether this thread's connection is inside a transaction: one of Peewee's, or one begun by
    hand (`execute_sql("BEGIN")`); the connection itself knows of both."""
    return not database.is_closed() and (
        database.connection().info.transaction_status != psycopg2.extensions.TRANSACTION_STATUS_IDLE
    )
