"""Retries' decision, known before Retries acts on it; and the Retries that makes it.

The status middleware must commit `retrying` before Retries publishes the retry; otherwise a
retry due at once could be delivered while the row still says `active`, and its start would be
refused. So it runs before Retries (after it in the middleware list, since after-hooks run in
reverse) and asks here what Retries is about to decide, from the same options Retries reads.
"""

from __future__ import annotations

from typing import Any

from dramatiq import Broker, Message
from dramatiq.middleware import Retries

from .cancellation import CANCELLATION
from .errors import JobStartNotRecorded
from .lease import LeaseExpired

#: Ends of an attempt that Retries leaves alone: a cancellation (never run again), a lease that
#: ran out and a start that was never recorded (the status middleware sends those again itself,
#: without counting a retry: the job did not fail).
NOT_RETRIED: tuple[type[BaseException], ...] = (*CANCELLATION, LeaseExpired, JobStartNotRecorded)


class JobRetries(Retries):
    """Dramatiq's Retries, except for the ends of an attempt in NOT_RETRIED."""

    def after_process_message(
        self, broker: Broker, message: Message, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        if isinstance(exception, NOT_RETRIED):
            return
        super().after_process_message(broker, message, result=result, exception=exception)


def _retries(broker: Broker) -> Retries | None:
    return next((m for m in broker.middleware if isinstance(m, Retries)), None)


def _max_retries(broker: Broker, message: Message, retries: Retries) -> int | None:
    actor = broker.get_actor(message.actor_name)
    return message.options.get("max_retries", actor.options.get("max_retries", retries.max_retries))


def max_attempts(broker: Broker, message: Message) -> int:
    retries = _retries(broker)
    if retries is None:
        return 1
    most = _max_retries(broker, message, retries)
    # Unbounded retries: the largest count the column holds stands for "no limit".
    return 2**31 - 1 if most is None else most + 1


def will_retry(broker: Broker, message: Message, exception: BaseException) -> bool:
    """What Retries.after_process_message will decide for this failure (dramatiq 2.x, with
    JobRetries' exceptions)."""
    retries = _retries(broker)
    if retries is None or isinstance(exception, NOT_RETRIED):
        return False
    actor = broker.get_actor(message.actor_name)
    throws = message.options.get("throws") or actor.options.get("throws")
    if throws and isinstance(exception, throws):
        return False
    done = message.options.get("retries", 0)
    retry_when = actor.options.get("retry_when", retries.retry_when)
    if retry_when is not None:
        return bool(retry_when(done, exception))
    most = _max_retries(broker, message, retries)
    return most is None or done < most
