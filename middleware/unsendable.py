"""A waiting job that can't be sent again: its arguments, stored before the database's
ceilings, are nested too deep for Python to read (db.stored_json). The reaper and reconcile,
which publish jobs again from their rows, fail it instead of publishing it at every pass."""

from __future__ import annotations

import dataclasses

import structlog

from db import transitions

log = structlog.get_logger(__name__)


def fail(job: transitions.Reaped) -> transitions.Reaped:
    """Fails the job (the database checks that what it holds is over a ceiling); returns it with
    the outcome 'failed', or as it was if the database refused."""
    outcome = transitions.fail_unsendable(job.job_id)
    bound = log.bind(job_id=job.job_id, job_type=job.job_type, write="awaited", transition=f"{job.outcome} -> failed")
    if not outcome.applied:
        bound.error("unsendable_job_not_failed", outcome=outcome.outcome, status=outcome.status)
        return job
    bound.error("job_failed_unsendable", error="its stored arguments or options are over the database's ceilings")
    return dataclasses.replace(job, outcome="failed")
