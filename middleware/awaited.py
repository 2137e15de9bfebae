"""How a worker's status writes are awaited: through the group commit first, then on the
thread's own connection; tried until they are written; never lost to a late interruption."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable

import structlog
from dramatiq.middleware import Interrupt

from db import transitions
from db.connection import reconnecting
from db.group_commit import GroupCommit
from db.measures import WRITE_SECONDS_BOUNDS, Histogram

log = structlog.get_logger(__name__)

#: A status write, given the GroupCommit to go through (None: this thread's own connection).
Write = Callable[[GroupCommit | None], transitions.Outcome]

#: How long this process's status hooks waited for their writes, retries included: starts
#: (mark_active) and ends (every other write). Reported by middleware/report.py.
WRITE_SECONDS = {"start": Histogram(WRITE_SECONDS_BOUNDS), "end": Histogram(WRITE_SECONDS_BOUNDS)}


def awaited(commits: GroupCommit | None, write: Write, *, what: str, deadline_s: float) -> transitions.Outcome:
    """Runs a status write through the group commit; after a failure it tries again on this
    thread's own connection (so that a locked row does not hold the other threads' writes),
    until it succeeds or `deadline_s` has passed (DatabaseUnavailable). An error that is not
    transient is raised at once."""
    tries = 0

    def attempt() -> transitions.Outcome:
        nonlocal tries
        tries += 1
        return write(commits if tries == 1 else None)

    started = time.perf_counter()
    try:
        return reconnecting(attempt, what=what, deadline_s=deadline_s)
    finally:
        WRITE_SECONDS["start" if what == "mark_active" else "end"].observe(time.perf_counter() - started)


def until_written(
    commits: GroupCommit | None, write: Write, *, what: str, bound: structlog.BoundLogger
) -> transitions.Outcome:
    """`awaited` with no deadline, through any interruption that arrives late: an interrupter
    (TimeLimit, an abort) whose own after-hook has run, but whose exception was already on its
    way. The job has ended; its end is written all the same (a try that went through before is
    recognised: the writes are idempotent). Errors that are not transient are raised."""
    while True:
        try:
            return awaited(commits, write, what=what, deadline_s=math.inf)
        except Interrupt as late:
            bound.warning("interrupt_ignored", interrupt=type(late).__name__)


def failed_instead(
    commits: GroupCommit | None, job_id: str, attempt: int, worker: str, to: str, error: BaseException
) -> transitions.Outcome:
    """`failed`, with why the end the job reached could not be written. Its values are ours, so
    only an unreachable database (or a bug) keeps it from being written: it is tried until it
    is, and the message is not acknowledged before."""
    failure = transitions.Failure(
        "EndNotRecorded", f"the end of attempt {attempt} ({to}) could not be recorded: {error}", ""
    )
    bound = log.bind(job_id=job_id, attempt=attempt, write="awaited", worker=worker, transition="active -> failed")
    delay = 0.1
    while True:
        try:
            return until_written(
                commits,
                lambda via: transitions.mark_failed(job_id, attempt, worker, failure, via=via),
                what="mark_failed",
                bound=bound,
            )
        except Exception as again:  # noqa: BLE001 - a bug: say so, and keep the message
            bound.critical("transition_not_recorded", error=str(again))
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 30.0)
