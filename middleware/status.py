"""Persists the lifecycle of every job in PostgreSQL, synchronously, from Dramatiq's hooks."""

from __future__ import annotations

import json
import math
import traceback
from collections.abc import Callable
from typing import Any

import peewee
import structlog
from dramatiq import Broker, Message
from dramatiq.middleware import Middleware, SkipMessage

from db import transitions
from db.connection import DatabaseUnavailable, database, reconnecting
from db.group_commit import GroupCommit
from jobs.errors import JobNotRecorded, JobStartNotRecorded, MissingOwner

from .cancellation import CANCELLATION
from .identity import worker_id
from .options import ATTEMPT, OWNER, RECORDED, RECORDED_IN_BATCH
from .retry_policy import max_attempts, will_retry

log = structlog.get_logger(__name__)

MAX_STACK = 16_000


class StatusMiddleware(Middleware):
    """Records each transition of a job, guarded and with its event, before Dramatiq goes on.

    Guarantees:
      * send() returns only once the job's `pending` row is committed; when it can't be written,
        send() raises JobRejected and nothing is published. A batch (record_batch, for
        jobs.service.send_jobs) is committed whole before any of its messages is published.
      * An actor runs only once its `active` row is committed. A delivery whose job is finished
        (a redelivery) or held by another worker is skipped; the skip is recorded as an event.
      * The end of an attempt (`completed`, `retrying`, `failed`) is committed before Retries
        publishes a retry and before the message is acknowledged.
      * A transition the database refuses is recorded as an event and never applied.

    It must come after Retries in the broker's middleware list: after-hooks run in reverse, so it
    then records an attempt's end before Retries publishes the retry (see retry_policy).

    Parameters:
      send_deadline_s(float): how long send() retries an unreachable database before it fails.
      start_deadline_s(float): the same for recording a start; past it the job does not run
        (JobStartNotRecorded, which Retries treats like any failure).
      finish_deadline_s(float): the same for the end of an attempt; by default it never gives
        up, since the message must not be acknowledged as if its end were recorded.
      group_commit(bool): commit the writes of the worker's threads together (db.group_commit);
        each hook still returns only once its own write is committed.
    """

    def __init__(
        self,
        *,
        send_deadline_s: float = 5.0,
        start_deadline_s: float = 30.0,
        finish_deadline_s: float = math.inf,
        group_commit: bool = True,
    ) -> None:
        self.send_deadline_s = send_deadline_s
        self.start_deadline_s = start_deadline_s
        self.finish_deadline_s = finish_deadline_s
        # The writes of a worker's threads (starts and ends of attempts) share commits; a send
        # commits alone, or with its batch (record_batch).
        self.commits = GroupCommit() if group_commit else None

    def before_enqueue(self, broker: Broker, message: Message, delay: int | None) -> None:
        # Popped, not read: the option must not travel with the message to its later enqueues.
        if message.options.pop(RECORDED_IN_BATCH, False):
            return
        if message.options.get(RECORDED):
            if delay is not None:
                self._reschedule(message, delay)
            return
        created = self._record_pending(broker, [message], delay)
        message.options[RECORDED] = True
        log.info(
            "job_enqueued",
            job_id=message.message_id,
            job_type=message.actor_name,
            attempt=0,
            write="awaited",
            transition="-> pending",
            outcome="applied" if created else "exists",
            delay_ms=delay,
        )

    def record_batch(self, broker: Broker, messages: list[Message], delay: int | None) -> None:
        """Commits the pending rows of messages of one actor in one round trip, before any of them
        is published (send_jobs then enqueues them); raises JobRejected, writing nothing, if any
        of them can't be recorded."""
        if not messages:
            return
        created = self._record_pending(broker, messages, delay)
        for message in messages:
            message.options[RECORDED] = True
            message.options[RECORDED_IN_BATCH] = True
        log.info(
            "jobs_enqueued",
            job_type=messages[0].actor_name,
            attempt=0,
            write="awaited",
            transition="-> pending",
            count=len(messages),
            created=created,
            delay_ms=delay,
            job_ids=[message.message_id for message in messages],
        )

    def before_process_message(self, broker: Broker, message: Message) -> None:
        message.options.pop(ATTEMPT, None)
        me = worker_id()
        bound = log.bind(job_id=message.message_id, job_type=message.actor_name, write="awaited", worker=me)
        try:
            outcome = reconnecting(
                lambda: transitions.mark_active(message.message_id, me, via=self.commits),
                what="mark_active",
                deadline_s=self.start_deadline_s,
            )
        except (DatabaseUnavailable, peewee.DatabaseError) as error:
            bound.error("start_not_recorded", transition="-> active", error=str(error).strip())
            raise JobStartNotRecorded(f"the start of job {message.message_id} was not recorded: {error}") from error
        bound = bound.bind(
            attempt=outcome.attempts, transition=f"{outcome.previous} -> active", outcome=outcome.outcome
        )
        if outcome.applied:
            message.options[ATTEMPT] = outcome.attempts
            bound.info("job_started")
            return
        if outcome.outcome == "missing":
            # Published without its row, so not sent through this system: never run it.
            bound.error("job_untracked")
            message.fail()
        elif outcome.outcome == "terminal":
            bound.info("delivery_skipped")
        else:
            bound.warning("transition_rejected")
        raise SkipMessage(f"job {message.message_id} is {outcome.status}")

    def after_process_message(
        self,
        broker: Broker,
        message: Message,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        attempt = message.options.get(ATTEMPT)
        if attempt is None or isinstance(exception, JobStartNotRecorded):
            return
        job_id, me = message.message_id, worker_id()
        if exception is None:
            result = _jsonable(result)
            self._end(
                message,
                attempt,
                me,
                "completed",
                lambda: transitions.mark_completed(job_id, attempt, me, result, via=self.commits),
            )
        elif isinstance(exception, CANCELLATION):
            self._stopped(message, attempt, how=type(exception).__name__)
        else:
            failure = _failure(exception)
            mark, to = (
                (transitions.mark_retrying, "retrying")
                if will_retry(broker, message, exception)
                else (transitions.mark_failed, "failed")
            )
            self._end(
                message,
                attempt,
                me,
                to,
                lambda: mark(job_id, attempt, me, failure, via=self.commits),
                error_type=failure.type,
                error=failure.message,
            )

    def after_skip_message(self, broker: Broker, message: Message) -> None:
        # Skipped after its start was recorded, by a middleware that comes after this one.
        attempt = message.options.get(ATTEMPT)
        if attempt is not None:
            self._stopped(message, attempt, how="skipped")

    def after_worker_thread_boot(self, broker: Broker, thread: Any) -> None:
        try:
            database.connect(reuse_if_open=True)
        except peewee.OperationalError as error:
            # Not fatal: the first write connects again, and retries until the database is back.
            log.warning("database_unreachable", what="worker_thread_boot", error=str(error).strip())

    def before_worker_thread_shutdown(self, broker: Broker, thread: Any) -> None:
        database.close()

    def after_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        # Every worker thread has finished its writes by now.
        if self.commits is not None:
            self.commits.close()

    def _record_pending(self, broker: Broker, messages: list[Message], delay: int | None) -> int:
        """Writes the pending rows of messages of one actor in one statement, retrying an
        unreachable database until the send deadline; returns how many were new. Raises
        JobNotRecorded, so that nothing is published, when it can't write them all."""
        first = messages[0]
        jobs = []
        for message in messages:
            owner = message.options.get(OWNER) or {}
            if not owner.get("user_id"):
                raise MissingOwner(message.actor_name)
            jobs.append(
                transitions.Pending(
                    message.message_id, owner["user_id"], owner.get("course_id"), list(message.args), message.kwargs
                )
            )

        def insert() -> int:
            return transitions.record_enqueued_many(
                job_type=first.actor_name,
                queue=first.queue_name,
                max_attempts=max_attempts(broker, first),
                delay_ms=delay,
                jobs=jobs,
            )

        try:
            return reconnecting(insert, what="record_enqueued", deadline_s=self.send_deadline_s)
        except (DatabaseUnavailable, peewee.DatabaseError) as error:
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

    def _stopped(self, message: Message, attempt: int, *, how: str) -> None:
        me = worker_id()
        self._end(
            message,
            attempt,
            me,
            "cancelled",
            lambda: transitions.mark_stopped(message.message_id, attempt, me, how, via=self.commits),
            how=how,
        )

    def _end(
        self,
        message: Message,
        attempt: int,
        me: str,
        to: str,
        write: Callable[[], transitions.Outcome],
        **fields: Any,
    ) -> None:
        """Records the end of an attempt; it never gives up by default (see finish_deadline_s)."""
        event = {"completed": "job_completed", "retrying": "job_retrying", "failed": "job_failed"}.get(
            to, "job_interrupted"
        )
        bound = log.bind(
            job_id=message.message_id,
            job_type=message.actor_name,
            attempt=attempt,
            write="awaited",
            worker=me,
            transition=f"active -> {to}",
            **fields,
        )
        try:
            outcome = reconnecting(write, what=event, deadline_s=self.finish_deadline_s)
        except (DatabaseUnavailable, peewee.DatabaseError) as error:
            bound.critical("transition_not_recorded", error=str(error).strip())
            return
        if outcome.applied:
            bound.info(event, outcome=outcome.outcome)
        else:
            bound.warning("transition_rejected", outcome=outcome.outcome, status=outcome.status)

    def _reschedule(self, message: Message, delay: int) -> None:
        try:
            moved = reconnecting(
                lambda: transitions.reschedule(message.message_id, delay),
                what="reschedule",
                deadline_s=self.send_deadline_s,
            )
        except (DatabaseUnavailable, peewee.DatabaseError) as error:
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


def _failure(exception: BaseException) -> transitions.Failure:
    stack = "".join(traceback.format_exception(type(exception), exception, exception.__traceback__))
    return transitions.Failure(type(exception).__name__, str(exception) or type(exception).__name__, stack[-MAX_STACK:])


def _jsonable(result: Any) -> Any:
    try:
        json.dumps(result)
    except (TypeError, ValueError):
        return {"repr": repr(result)}
    return result
