"""A job whose progress the test sets, one step at a time, so that a test sees a page follow a
job's progress without guessing how fast it runs: `step(job_id, 40)` makes it report 40 %,
`finish(job_id)` makes it return. It waits for its orders in Redis in short steps, where an
abort (a cancellation) reaches it.

Worker processes load it beside the real jobs: `dramatiq actors tests.support.stepped`."""

from __future__ import annotations

import os

import dramatiq
import redis

from middleware import current_job, report_progress

STEP_S = 0.05
_FINISH = b"finish"


def _client() -> redis.Redis:
    return redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))


def _key(job_id: str) -> str:
    return f"{os.environ.get('JOBS_NAMESPACE', 'jobs')}:stepped:{job_id}"


@dramatiq.actor(max_retries=0)
def stepped_job() -> dict:
    """Reports each progress the test orders, and returns when told to finish."""
    job = current_job()
    client, key = _client(), _key(job.job_id)
    reported = []
    while True:
        order = client.blpop([key], timeout=STEP_S)
        if order is None:
            continue
        if order[1] == _FINISH:
            return {"reported": reported}
        percent = int(order[1])
        report_progress(percent, f"step {len(reported) + 1}: {percent}%")
        reported.append(percent)


def step(job_id: str, percent: int) -> None:
    """Makes the job report `percent` of progress."""
    _client().rpush(_key(job_id), str(percent))


def finish(job_id: str) -> None:
    """Makes the job return (after the steps ordered before)."""
    _client().rpush(_key(job_id), _FINISH)
