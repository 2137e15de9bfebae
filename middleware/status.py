"""Persists each attempt of a job in PostgreSQL, synchronously, from the worker's hooks."""

from __future__ import annotations

import traceback
from typing import Any

import peewee
import structlog
from dramatiq import Broker, Message
from dramatiq.middleware import Middleware, SkipMessage

from db import transitions
from db.connection import close_quietly, database, drop_if_dead, is_connection_error
from db.errors import DatabaseUnavailable
from db.group_commit import GroupCommit

from .awaited import Write, awaited, failed_instead, until_written
from .cancellation import CANCELLATION
from .dramatiq_lines import outcome_logged
from .errors import JobStartNotRecorded
from .identity import worker_id
from .lease import Lease, LeaseExpired, clock
from .log_arguments import logged_arguments
from .options import ATTEMPT, ENDED, STARTED
from .resend import again
from .retry_policy import will_retry

log = structlog.get_logger(__name__)

#: An attempt's end, by the status it left the job in: its line and that line's level. One line
#: per outcome (Dramatiq's own are dropped, middleware/dramatiq_lines.py); only a job that failed
#: for good is an error, a cancellation is what a user asked for.
_ENDS = {
    "completed": ("job_completed", "info"),
    "retrying": ("job_retrying", "warning"),
    "failed": ("job_failed", "error"),
    "cancelled": ("job_cancelled", "info"),
}


class StatusMiddleware(Middleware):
    """Records the start and the end of every attempt, guarded and with its event, before
    Dramatiq goes on.

    Guarantees:
      * An actor runs only once its `active` row is committed, by a worker process whose lease is
        live (middleware/lease.py; the database refuses a start without one). While the process
        holds no live lease (at boot, or cut off from the database), a delivery waits for one; if
        the worker stops first, its message is handed back to the queue unchanged. A delivery of
        a finished job (a redelivery) or of one held by another worker is skipped, and the skip
        recorded; one the database can never start (a malformed id) is dead-lettered.
      * The end of an attempt (`completed`, `retrying`, `failed`, `cancelled`) is committed before
        Retries publishes a retry and before the message is acknowledged: a write that can't reach
        the database is tried until it can; a job's output the database can't store is made
        storable (db.storable); a write the database refuses for good records `failed`, with why.
      * An attempt stopped because the lease was running out goes back to `retrying` and is
        published again (or ends `failed` at the database's delivery limit), unless the reaper
        took it first.
      * A transition the database refuses is recorded as an event and never applied; a refused
        end records when its execution really ended.

    It must come after Retries in the broker's middleware list: after-hooks run in reverse, so it
    then records an attempt's end before Retries publishes the retry (see retry_policy).

    Parameters:
      lease(Lease): this worker process's lease.
      group_commit(bool): commit the writes of the worker's threads together (db.group_commit);
        each hook still returns only once its own write is committed.
    """

    def __init__(self, *, lease: Lease, group_commit: bool = True) -> None:
        self.lease = lease
        self.commits = GroupCommit() if group_commit else None

    def before_process_message(self, broker: Broker, message: Message) -> None:
        message.options.pop(ATTEMPT, None)
        message.options.pop(STARTED, None)
        # A connection the server dropped stays broken in this thread until it is closed: the job
        # (and this thread's own writes) get a working one.
        drop_if_dead()
        me = worker_id()
        bound = log.bind(job_id=message.message_id, job_type=message.actor_name, write="awaited", worker=me)
        outcome = self._start(message, me, bound)
        bound = bound.bind(
            attempt=outcome.attempts, transition=f"{outcome.previous} -> active", outcome=outcome.outcome
        )
        if outcome.applied:
            message.options[ATTEMPT] = outcome.attempts
            message.options[STARTED] = clock()
            actor = broker.actors.get(message.actor_name)
            bound.info("job_started", arguments=logged_arguments(actor, message.args, message.kwargs))
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
        if isinstance(exception, JobStartNotRecorded):
            self._hand_back(broker, message)
            return
        if exception is not None and is_connection_error(exception):
            close_quietly()  # the job's connection failed: the next one on this thread opens another
        attempt = message.options.get(ATTEMPT)
        if attempt is None:
            return
        # When the job's code returned (the lease keeper's after-hook, the first to run), not now:
        # the hooks between may take a while on a starved machine.
        ended = message.options.pop(ENDED, None) or clock()
        job_id, me = message.message_id, worker_id()
        if exception is None:
            self._end(
                message,
                attempt,
                ended,
                "completed",
                lambda via: transitions.mark_completed(
                    job_id, attempt, me, result, ended_ms_ago=transitions.Age(ended, clock), via=via
                ),
            )
        elif isinstance(exception, LeaseExpired):
            self._lease_expired(broker, message, attempt, ended)
        elif isinstance(exception, CANCELLATION):
            self._stopped(message, attempt, ended, how=type(exception).__name__)
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
                ended,
                to,
                lambda via: mark(job_id, attempt, me, failure, ended_ms_ago=transitions.Age(ended, clock), via=via),
                error_type=failure.type,
                error=failure.message,
            )

    def after_skip_message(self, broker: Broker, message: Message) -> None:
        # Skipped after its start was recorded, by a middleware that comes after this one.
        attempt = message.options.get(ATTEMPT)
        if attempt is not None:
            self._stopped(message, attempt, clock(), how="skipped")

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

    def _start(self, message: Message, me: str, bound: Any) -> transitions.Outcome:
        """Records the start, while the lease is live; waits for the lease when it is not."""
        while True:
            if not self.lease.live():
                bound.warning("start_postponed", why="the worker holds no live lease")
            if not self.lease.wait_live():
                bound.info("start_handed_back", why="the worker stops, holding no live lease")
                raise JobStartNotRecorded(f"job {message.message_id} was not started: the worker is stopping")
            try:
                outcome = awaited(
                    self.commits,
                    lambda via: transitions.mark_active(message.message_id, me, via=via),
                    what="mark_active",
                    # Past the lease, the database would refuse the start anyway.
                    deadline_s=max(0.0, self.lease.stop_at() - clock()),
                )
            except DatabaseUnavailable as error:
                bound.warning("start_postponed", why="database unreachable", error=str(error).strip())
                continue
            except Exception as error:  # noqa: BLE001 - refused for good: this message can never start
                bound.error("start_refused", transition="-> active", error=str(error).strip())
                message.fail()
                raise SkipMessage(f"the start of job {message.message_id} was refused: {error}") from None
            if outcome.outcome != "no_lease":
                return outcome
            # The database has no live lease for this process (its row says it stopped, or its
            # clock ran ahead): wait for a heartbeat sent from now on.
            bound.warning("start_postponed", why="the database holds no live lease for this worker")
            if not self.lease.wait_renewed_after(clock()):
                raise JobStartNotRecorded(f"job {message.message_id} was not started: the worker is stopping")

    def _lease_expired(self, broker: Broker, message: Message, attempt: int, ended: float) -> None:
        job_id, me = message.message_id, worker_id()
        outcome = self._end(
            message,
            attempt,
            ended,
            "retrying",
            lambda via: transitions.mark_lease_expired(
                job_id, attempt, me, ended_ms_ago=transitions.Age(ended, clock), via=via
            ),
            event="job_lease_expired",
        )
        if outcome is not None and outcome.applied and outcome.status == "retrying":
            self._publish(broker, message, why="lease_expired")

    def _hand_back(self, broker: Broker, message: Message) -> None:
        """Its start was never recorded: the same message goes back to the queue, no retry counted."""
        self._publish(broker, message, why="start_not_recorded")

    def _publish(self, broker: Broker, message: Message, *, why: str) -> None:
        try:
            broker.enqueue(again(message))
        except Exception as error:  # noqa: BLE001 - the row is waiting: reconcile publishes it again
            log.warning("job_not_republished", job_id=message.message_id, why=why, error=str(error).strip())
            return
        log.info("job_republished", job_id=message.message_id, job_type=message.actor_name, why=why)

    def _stopped(self, message: Message, attempt: int, ended: float, *, how: str) -> None:
        me = worker_id()
        self._end(
            message,
            attempt,
            ended,
            "cancelled",
            lambda via: transitions.mark_stopped(
                message.message_id, attempt, me, how, ended_ms_ago=transitions.Age(ended, clock), via=via
            ),
            how=how,
        )

    def _end(
        self,
        message: Message,
        attempt: int,
        ended: float,
        to: str,
        write: Write,
        *,
        event: str | None = None,
        **fields: Any,
    ) -> transitions.Outcome | None:
        """Records the end of an attempt; it never gives up. A write refused for good (not a
        transient error) records `failed` with why instead. Logs the outcome once, at its level."""
        started = message.options.get(STARTED)
        if started is not None:
            fields["duration_ms"] = round((ended - started) * 1000)
        me = worker_id()
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
            outcome = until_written(self.commits, write, what=event or _ENDS[to][0], bound=bound)
        except Exception as error:  # noqa: BLE001 - refused for good: the job's end must still be recorded
            # A warning: the job_failed line that follows is the error, and says why.
            bound.warning("transition_refused", error=str(error).strip())
            outcome = failed_instead(self.commits, message.message_id, attempt, me, to, error)
            bound = bound.bind(transition="active -> failed", error_type="EndNotRecorded", error=str(error).strip())
            event = None
        if outcome.applied:
            default_event, level = _ENDS.get(outcome.status or to, ("job_ended", "info"))
            getattr(bound, level)(event or default_event, outcome=outcome.outcome, status=outcome.status)
        else:
            bound.warning("transition_rejected", outcome=outcome.outcome, status=outcome.status)
        outcome_logged(message.message_id)
        return outcome


def _failure(exception: BaseException) -> transitions.Failure:
    stack = "".join(traceback.format_exception(type(exception), exception, exception.__traceback__))
    # Made storable here, not only when written: the job_failed line carries the message too.
    return transitions.Failure(type(exception).__name__, str(exception) or type(exception).__name__, stack).storable()
