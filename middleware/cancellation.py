"""What stops a job that was cancelled."""

from __future__ import annotations

from dramatiq import Broker, Message
from dramatiq_abort import Abort, Abortable

from db import transitions

from .context import current_job


class JobCancelled(Exception):
    """Raised by a job that noticed it was cancelled (see raise_if_cancelled)."""


#: Exceptions that end an attempt because its job was cancelled: never retried, never failed.
CANCELLATION: tuple[type[BaseException], ...] = (Abort, JobCancelled)


def raise_if_cancelled() -> None:
    """For code that an asynchronous abort can't interrupt (C code, long system calls): checks
    the database, where the cancellation is recorded before any abort is sent."""
    job = current_job()
    if transitions.is_cancelled(job.job_id):
        raise JobCancelled(f"job {job.job_id} was cancelled")


class RunningAbortable(Abortable):
    """dramatiq-abort's Abortable, for running jobs only.

    Abortable asks Redis before every message whether it was cancelled while waiting. Here a
    cancellation is committed in PostgreSQL before anything else, and the status middleware
    refuses to start a cancelled job in the write that starts it, so that question would cost
    every job a Redis round trip to learn nothing. Running jobs are still registered, so that an
    abort interrupts them.
    """

    def before_process_message(self, broker: Broker, message: Message) -> None:
        if self.is_abortable(broker.get_actor(message.actor_name), message):
            self.manager.add_abortable(message.message_id)
