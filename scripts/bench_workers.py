"""The worker side of scripts/bench.py, run as `dramatiq bench_workers --path . scripts`.

BENCH_CONFIG=bare: Dramatiq as it comes (a RedisBroker and its default middleware) with a
trivial `test_job`. BENCH_CONFIG=naive: the same, plus the naive prototype's two writes per job
(NaiveStatus: an autocommit UPDATE to active before the job, one to completed after it, on a
connection per thread, no event, no guard). BENCH_CONFIG=full: this system's broker (`actors`), whose `test_job` with no
arguments is as trivial. Both report each finished job, after every other after-hook has run,
to the Redis list BENCH_DONE_KEY: its id, when it finished, and for the full system the time
spent in the status hooks. The reports are buffered and pushed by one thread, so that the probe
costs both configurations the same and little.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import dramatiq
import psycopg2
import redis
from dramatiq.middleware import Middleware

CONFIG = os.environ["BENCH_CONFIG"]
DONE_KEY = os.environ["BENCH_DONE_KEY"]
STATS_KEY = DONE_KEY + ":stats"
FLUSH_S = 0.02


class Probe(Middleware):
    """Put first in the list: after-hooks run in reverse, so its own runs last."""

    def __init__(self, client: redis.Redis, timings: dict[str, dict[str, float]]) -> None:
        self.client = client
        self.timings = timings
        self.buffer: list[str] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.flusher: threading.Thread | None = None

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None, exception: Any = None) -> None:
        report = {"id": message.message_id, "done": time.time(), **self.timings.pop(message.message_id, {})}
        with self.lock:
            self.buffer.append(json.dumps(report))

    def after_worker_boot(self, broker: Any, worker: Any) -> None:
        self.flusher = threading.Thread(target=self._flush_until_stopped, daemon=True)
        self.flusher.start()

    def before_worker_shutdown(self, broker: Any, worker: Any) -> None:
        self.stopping.set()
        if self.flusher is not None:
            self.flusher.join()
        commits = getattr(status, "commits", None) if CONFIG == "full" else None
        if commits is not None:
            self.client.rpush(STATS_KEY, json.dumps({"writes": commits.writes, "transactions": commits.transactions}))

    def _flush_until_stopped(self) -> None:
        while not self.stopping.wait(FLUSH_S):
            self._flush()
        self._flush()

    def _flush(self) -> None:
        with self.lock:
            batch, self.buffer = self.buffer, []
        if batch:
            self.client.rpush(DONE_KEY, *batch)


class NaiveStatus(Middleware):
    """The naive prototype's status writes: one autocommit UPDATE each, by id, on the thread's
    own connection; the row was inserted by the sender (scripts/bench.py, naive_jobs)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.local = threading.local()
        self.worker = f"naive:{os.getpid()}"

    def _execute(self, sql: str, params: tuple[Any, ...]) -> None:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = psycopg2.connect(self.url)
            conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(sql, params)

    def before_process_message(self, broker: Any, message: Any) -> None:
        self._execute(
            "UPDATE naive_jobs SET status = 'active', started_at = now(), worker_id = %s WHERE job_id = %s",
            (self.worker, message.message_id),
        )

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None, exception: Any = None) -> None:
        self._execute(
            "UPDATE naive_jobs SET status = %s, completed_at = now(), result = %s WHERE job_id = %s",
            ("completed" if exception is None else "failed", json.dumps(result), message.message_id),
        )


def timed(middleware: Middleware, hook: str, timings: dict[str, dict[str, float]]) -> None:
    """Wraps one hook of `middleware` (this instance only) to record its duration per message."""
    original = getattr(middleware, hook)

    def wrapper(broker: Any, message: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(broker, message, *args, **kwargs)
        finally:
            timings.setdefault(message.message_id, {})[hook] = time.perf_counter() - started

    setattr(middleware, hook, wrapper)


timings: dict[str, dict[str, float]] = {}
if CONFIG in ("bare", "naive"):
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(url=os.environ["REDIS_URL"], namespace=os.environ["BENCH_BARE_NAMESPACE"])
    if CONFIG == "naive":
        broker.add_middleware(NaiveStatus(os.environ["BENCH_NAIVE_DATABASE_URL"]))
    dramatiq.set_broker(broker)

    @dramatiq.actor(actor_name="test_job")
    def test_job(delay_ms: int = 0) -> dict:
        return {"waited_ms": delay_ms, "attempt": 1}

else:
    import actors
    from middleware import StatusMiddleware

    broker = actors.broker
    status = next(m for m in broker.middleware if isinstance(m, StatusMiddleware))
    for hook in ("before_process_message", "after_process_message"):
        timed(status, hook, timings)

broker.middleware.insert(0, Probe(redis.Redis.from_url(os.environ["REDIS_URL"]), timings))
