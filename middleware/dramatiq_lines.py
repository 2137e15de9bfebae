"""Dramatiq's own lines in a worker, fitted to ours: one line per outcome, the job's id on every
line about a job, its arguments by name.

The status middleware logs how every attempt it started ended, at the level the outcome deserves
(job_completed, job_retrying WARNING, job_failed ERROR, job_cancelled INFO), with the job's
id, type, error and duration. Dramatiq logs the same ends again in its own words: "Failed to
process message ... with unhandled exception" at ERROR with a traceback (for a cancellation
too, which would page whoever is on call), then Retries' "Retrying message", "Retries
exceeded", "Aborting message". Those duplicates are dropped by a filter on Dramatiq's loggers,
not rewritten: the middleware that knows the outcome has said it. A filter on the loggers (not
on our handler) works whoever handles the lines, a worker or a service's own logging. The lines
that remain name their job, and show its arguments as the actor allows (log_arguments.py).
"""

from __future__ import annotations

import logging
import threading

from dramatiq import Broker, Message
from dramatiq.broker import MessageProxy
from dramatiq.logging import get_logger

from .log_arguments import describe
from .options import ATTEMPT

# Worker lines that report an attempt's end: the status middleware logs it, whenever it recorded
# the attempt's start (ATTEMPT in the message's options). Dramatiq logs them before the after-hooks.
_ATTEMPT_ENDED = (
    "Failed to process message %s with unhandled exception.",
    "Failed to process message %s with expected exception %s.",
)
# Every middleware of this stack that skips a message logs why itself (the status middleware:
# delivery_skipped, transition_rejected, job_untracked, start_refused; AgeLimit its warning).
_SKIPPED = "Message %s was skipped."
# Retries' decision, logged after the status middleware has logged the same end (its after-hook
# runs first): dropped when it has (outcome_logged).
_RETRIES_DECIDED = (
    "Retrying message %r in %d milliseconds.",
    "Retries exceeded for message %r.",
    "Aborting message %r.",
)
# dramatiq-abort's watcher thread, which can't name the job: job_cancelled says it, once.
_ABORTING = "Aborting task. Raising exception in worker thread %r."
# Dramatiq's warning that a returned value is discarded: the status middleware keeps every
# result in job_status.result, so it would be wrong on every job.
_RESULTS_NOTICE = "Results middleware"
# An actor's own line, with its arguments' values.
_ACTOR_CALLED = "Received args=%r kwargs=%r."

_ended = threading.local()
_fitted: list[logging.Logger] = []


def outcome_logged(message_id: str) -> None:
    """Called by the status middleware once it has logged how an attempt ended, in the worker
    thread that ran it: Dramatiq's lines about that end, which follow, are duplicates."""
    _ended.message_id = message_id


class DramatiqLines(logging.Filter):
    """Drops Dramatiq's duplicates of the outcomes we log; names the job on the others and shows
    its arguments as the actor allows.

    Parameters:
      broker(Broker): the broker whose actors say whether their argument values may be logged.
    """

    def __init__(self, broker: Broker) -> None:
        super().__init__()
        self.broker = broker

    def filter(self, record: logging.LogRecord) -> bool:
        template = record.msg
        if not isinstance(template, str):
            return True
        if template == _ABORTING or _RESULTS_NOTICE in template:
            return False
        args = record.args if isinstance(record.args, tuple) else ()
        if template in _RETRIES_DECIDED and args and args[0] == getattr(_ended, "message_id", None):
            return False
        if template == _ACTOR_CALLED and len(args) == 2:
            actor = next((a for a in self.broker.actors.values() if a.logger.name == record.name), None)
            name = actor.actor_name if actor is not None else record.name
            record.msg, record.args = "Received %s.", (describe(name, actor, *args),)
            return True
        message = next((arg for arg in args if isinstance(arg, (Message, MessageProxy))), None)
        if message is not None:
            if template == _SKIPPED or (template in _ATTEMPT_ENDED and ATTEMPT in message.options):
                return False
            record.job_id = message.message_id
            record.args = tuple(self._describe(arg) if arg is message else arg for arg in args)
        elif "message %r" in template and args and isinstance(args[0], str):
            record.job_id = args[0]
        return True

    def _describe(self, message: Message) -> str:
        return describe(message.actor_name, self.broker.actors.get(message.actor_name), message.args, message.kwargs)


def fit_dramatiq_lines(broker: Broker) -> None:
    """Puts the filter on the loggers of Dramatiq's worker and consumer threads, of the broker, of
    its middleware and of its actors, in place of one put there for an earlier broker (tests
    build many)."""
    for logger in _fitted:
        for old in [f for f in logger.filters if isinstance(f, DramatiqLines)]:
            logger.removeFilter(old)
    _fitted.clear()
    queues = [*broker.get_declared_queues(), *broker.get_declared_delay_queues()]
    loggers = [
        get_logger("dramatiq.worker", "WorkerThread"),
        *[get_logger("dramatiq.worker", f"ConsumerThread({queue})") for queue in queues],
        *[owner.logger for owner in (broker, *broker.middleware, *broker.actors.values()) if hasattr(owner, "logger")],
    ]
    fitted = DramatiqLines(broker)
    for logger in loggers:
        if isinstance(logger, logging.Logger):
            logger.addFilter(fitted)
            _fitted.append(logger)
