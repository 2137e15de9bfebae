"""A diagnostic job: waits, fails or succeeds on request."""

from __future__ import annotations

import os
import signal
import time

import dramatiq

from middleware import current_job, report_progress
from middleware.cancellation import raise_if_cancelled
from middleware.settings import Settings

MAX_DELAY_MS = 3_600_000
STEP_S = 0.05


class IntentionalFailure(Exception):
    """Asked for with should_fail=True; never retried."""


class IntentionalTransientFailure(Exception):
    """Asked for with fail_attempts=N; retried like any ordinary error."""


def validate(delay_ms: int, should_fail: bool, fail_attempts: int, check_cancellation: bool, kill_worker: bool) -> None:
    if not 0 <= delay_ms <= MAX_DELAY_MS:
        raise ValueError(f"delay_ms must be from 0 to {MAX_DELAY_MS}, not {delay_ms}")
    if fail_attempts < 0:
        raise ValueError(f"fail_attempts must be 0 or more, not {fail_attempts}")
    if kill_worker and not Settings.from_env().allow_fault_injection:
        raise ValueError("kill_worker is refused unless JOBS_ALLOW_FAULT_INJECTION=1 (it kills the worker process)")


@dramatiq.actor(validate=validate, throws=(IntentionalFailure,))
def test_job(
    delay_ms: int = 0,
    should_fail: bool = False,
    fail_attempts: int = 0,
    check_cancellation: bool = False,
    kill_worker: bool = False,
) -> dict:
    """Waits delay_ms, reporting progress; fails, or kills its worker, when asked (demos, tests)."""
    job = current_job()
    if kill_worker:
        # As a job that runs its worker out of memory would: no hook, no cleanup.
        os.kill(os.getpid(), signal.SIGKILL)
    # Small steps, so that an asynchronous abort lands promptly (it can't interrupt a long sleep).
    started = time.monotonic()
    deadline = started + delay_ms / 1000
    reported = 0
    while (remaining := deadline - time.monotonic()) > 0:
        time.sleep(min(STEP_S, remaining))
        if check_cancellation:
            raise_if_cancelled()
        done = min(99, int((time.monotonic() - started) * 100_000 / delay_ms))
        if done >= reported + 10:
            reported = done
            report_progress(done, f"waited {done}% of {delay_ms} ms")
    if should_fail:
        raise IntentionalFailure("intentional failure (should_fail=True)")
    if job.attempt <= fail_attempts:
        raise IntentionalTransientFailure(f"intentional failure of attempt {job.attempt} of the first {fail_attempts}")
    return {"waited_ms": delay_ms, "attempt": job.attempt}
