"""A job that reports each of its executions to Redis as it runs, so that a test sees, apart from
the database, whether two executions of one job ever ran at the same time; and that runs until
the test releases it, so that a test holds it at a known point instead of guessing a duration.

Worker processes load it beside the real jobs: `dramatiq actors tests.support.witness`. Each
execution pushes its start to `<namespace>:witness:<job id>` and, every step while it runs, its
latest moment to the hash `...:seen`, both by the Redis server's clock (one clock for every
process). An execution's interval is [start, last moment seen]: a test that finds two intervals
of one job crossing has found two executions at once.
"""

from __future__ import annotations

import os
import socket

import dramatiq
import redis

from db.connection import database
from middleware import current_job
from middleware.identity import worker_id

STEP_S = 0.05


def _client() -> redis.Redis:
    return redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))


def _key(job_id: str) -> str:
    return f"{os.environ.get('JOBS_NAMESPACE', 'jobs')}:witness:{job_id}"


def _now(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1e6


@dramatiq.actor(max_retries=0)
def witnessed_job(block_first_ms: int = 0, query_db: bool = False) -> dict:
    """Runs until released (`release`), reporting as it goes, and with query_db asking PostgreSQL
    something at every step (so that a lost server blocks it in C code); with block_first_ms, its
    first attempt instead blocks in one system call that long, where no exception can reach it."""
    job = current_job()
    client, key = _client(), _key(job.job_id)
    execution = f"{job.attempt}@{worker_id()}"
    client.rpush(key, f"{execution} {_now(client)}")
    if block_first_ms and job.attempt == 1:
        blocked_in_a_system_call(block_first_ms / 1000)
    else:
        while not client.exists(f"{key}:release"):
            if query_db:
                database.execute_sql("SELECT 1").fetchone()
            client.hset(f"{key}:seen", execution, _now(client))
            # Woken at once by `release`, or after one step to report again.
            client.blpop([f"{key}:released"], timeout=STEP_S)
    client.hset(f"{key}:seen", execution, _now(client))
    return {"execution": execution}


def release(*job_ids: str) -> None:
    """Lets the executions of these jobs, running or to come, finish."""
    client = _client()
    for job_id in job_ids:
        client.set(f"{_key(job_id)}:release", 1)
        client.rpush(f"{_key(job_id)}:released", 1)


def blocked_in_a_system_call(seconds: float) -> None:
    """Waits on a socket that never receives anything, as a job waiting on a silent peer does:
    one system call, which no exception raised into the thread can interrupt."""
    left, right = socket.socketpair()
    with left, right:
        left.settimeout(seconds)
        try:
            left.recv(1)
        except TimeoutError:
            pass


def executions(job_id: str) -> list[tuple[str, float, float]]:
    """(execution, start, last moment seen) of every execution of the job so far, by start."""
    client, key = _client(), _key(job_id)
    seen = {name.decode(): float(moment) for name, moment in client.hgetall(f"{key}:seen").items()}
    runs = []
    for entry in client.lrange(key, 0, -1):
        name, start = entry.decode().rsplit(" ", 1)
        runs.append((name, float(start), seen.get(name, float(start))))
    return sorted(runs, key=lambda run: run[1])


def overlaps(job_id: str) -> list[tuple[str, str]]:
    """Pairs of executions of the job that were seen running at the same time."""
    runs = executions(job_id)
    return [(a[0], b[0]) for i, a in enumerate(runs) for b in runs[i + 1 :] if b[1] < a[2]]
