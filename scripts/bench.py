#!/usr/bin/env python3
"""Benchmarks against the real Redis and PostgreSQL; a benchmark, not a test.

  scripts/bench.py [throughput] [--jobs N] [--rounds R] [--processes P] [--threads T] [--batch B]
                   [--rate R] [--paced-jobs N] [--configs bare,full,...]
  scripts/bench.py scale [--sizes 10000,100000,1000000] [--samples S]
  scripts/bench.py ceiling [--jobs N] [--threads T] [--rounds R]

throughput: the same trivial job through real `dramatiq` worker processes, in configurations
alternated within one run (bare, full, full-batch, bare, full, ...): `bare` is Dramatiq with no
status middleware, `full` this system sending one job at a time, `full-batch` this system
sending with send_jobs in batches of B; `bare-paced` and `full-paced` send at --rate jobs/s,
the cost of a job on a machine that is not saturated. Medians over the rounds of: send rate,
end-to-end throughput (first send to last completion), latency per job (send to completion)
p50/p99, and for the full system the time inside each status hook and the writes per commit.
Then the ratios full/bare, beside the targets of issue 6.

scale: job_status filled by SQL to each size, then the send rate and the latency of the
product's reads (show and list, as a user, under row-level security) at that size.

ceiling: the three awaited writes of each job with no broker and no worker, on the same
database: what PostgreSQL alone allows on this machine (scripts/bench_ceiling.py).

All use their own database (`<DATABASE_URL's name>_bench`) and Redis namespace (`jobs-bench`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from middleware.settings import Settings  # noqa: E402


def _bench_env() -> dict[str, str]:
    """The environment of the benchmark: its own database and Redis namespace."""
    settings = Settings.from_env()

    def renamed(url: str) -> str:
        parts = urlparse(url)
        return urlunparse(parts._replace(path=parts.path.rstrip("/") + "_bench"))

    return {
        "DATABASE_URL": renamed(settings.database_url),
        "WORKER_DATABASE_URL": renamed(settings.worker_database_url),
        "ADMIN_DATABASE_URL": renamed(settings.admin_database_url),
        "REDIS_URL": settings.redis_url,
        "JOBS_NAMESPACE": "jobs-bench",
        "BENCH_BARE_NAMESPACE": "jobs-bench-bare",
        "JOBS_LOG_FORMAT": "json",
        "JOBS_LOG_LEVEL": os.environ.get("JOBS_LOG_LEVEL", "INFO"),
    }


os.environ.update(_bench_env())

import dramatiq  # noqa: E402
import psycopg2  # noqa: E402
import redis  # noqa: E402
from dramatiq.brokers.redis import RedisBroker  # noqa: E402
from polling import wait_until  # noqa: E402

import actors  # noqa: E402 - configures the database and the broker from the environment above
import db  # noqa: E402
from db import worker_limits  # noqa: E402
from db.connection import database  # noqa: E402
from db.fixtures import seed  # noqa: E402
from jobs import service  # noqa: E402
from middleware import SendRecorder  # noqa: E402
from middleware.log_format import configure_logging  # noqa: E402
from middleware.options import PUBLISH_ONLY  # noqa: E402

DONE_KEY = "jobs-bench:done"
CONFIGS = ("bare", "full", "full-batch", "bare-paced", "full-paced")
HOOKS = ("before_enqueue", "before_process_message", "after_process_message")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


@dataclass
class Phase:
    config: str
    sends: int
    send_s: float
    e2e_s: float
    latencies: list[float]
    hooks: dict[str, list[float]] = field(default_factory=dict)
    #: The workers' status writes per transaction (group commit), over the whole phase.
    writes_per_commit: float = 0.0

    @property
    def send_rate(self) -> float:
        return self.sends / self.send_s

    @property
    def throughput(self) -> float:
        return self.sends / self.e2e_s


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.redis = redis.Redis.from_url(os.environ["REDIS_URL"])
        self.bare_broker = RedisBroker(url=os.environ["REDIS_URL"], namespace=os.environ["BENCH_BARE_NAMESPACE"])

        def test_job(delay_ms: int = 0) -> dict:
            return {"waited_ms": delay_ms, "attempt": 1}

        self.bare_actor = dramatiq.actor(test_job, broker=self.bare_broker, actor_name="test_job")
        self.recorder = next(m for m in actors.broker.middleware if isinstance(m, SendRecorder))
        self.enqueue_s: list[float] = []
        self._time_sender_hooks()
        tenants = seed(os.environ["ADMIN_DATABASE_URL"])
        self.user = tenants["organizations"][0]["users"][1]["id"]
        self.log = tempfile.NamedTemporaryFile(prefix="bench-workers-", suffix=".log", delete=False)

    def _time_sender_hooks(self) -> None:
        before_enqueue, record_batch = self.recorder.before_enqueue, self.recorder.record_batch

        def timed_enqueue(broker: Any, message: Any, delay: Any) -> None:
            if message.options.get(PUBLISH_ONLY):
                # Its row was written by the batch, timed below: nothing to record here.
                return before_enqueue(broker, message, delay)
            started = time.perf_counter()
            before_enqueue(broker, message, delay)
            self.enqueue_s.append(time.perf_counter() - started)

        def timed_batch(broker: Any, messages: list[Any], delay: Any) -> list[str]:
            started = time.perf_counter()
            recorded = record_batch(broker, messages, delay)
            # The batch's one write, shared by its jobs.
            self.enqueue_s.extend([(time.perf_counter() - started) / len(messages)] * len(messages))
            return recorded

        self.recorder.before_enqueue = timed_enqueue
        self.recorder.record_batch = timed_batch

    def send(self, config: str, count: int) -> dict[str, float]:
        """Sends `count` jobs; returns when each was sent (wall clock, as the workers report).

        The paced configurations send one job every 1/--rate s: the cost of a job on a machine
        that is not saturated, where nothing queues for the CPU or the disk.
        """
        sent_at: dict[str, float] = {}
        paced = config.endswith("-paced")
        started = time.monotonic()
        if config == "full-batch":
            for start in range(0, count, self.args.batch):
                now = time.time()
                size = min(self.args.batch, count - start)
                sent_at.update(dict.fromkeys(service.send_jobs("test_job", [{}] * size, user_id=self.user), now))
            return sent_at
        for i in range(count):
            if paced:
                # The load's own schedule, not a wait for an outcome.
                time.sleep(max(0.0, started + i / self.args.rate - time.monotonic()))
            now = time.time()
            if config.startswith("bare"):
                sent_at[self.bare_actor.send().message_id] = now
            else:
                sent_at[service.send_job("test_job", user_id=self.user)] = now
        return sent_at

    def phase(self, config: str) -> Phase:
        self._clean()
        env = {
            **os.environ,
            "DATABASE_URL": os.environ["WORKER_DATABASE_URL"],  # workers log in as workers
            "BENCH_CONFIG": "bare" if config.startswith("bare") else "full",
            "BENCH_DONE_KEY": DONE_KEY,
        }
        workers = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dramatiq",
                "bench_workers",
                "--path",
                str(ROOT),
                str(ROOT / "scripts"),
                "--processes",
                str(self.args.processes),
                "--threads",
                str(self.args.threads),
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        try:
            warm = self.args.processes * self.args.threads * 4
            self.send(config, warm)
            wait_until(lambda: self.redis.llen(DONE_KEY) >= warm, what=f"{config} workers to warm up", timeout=60)
            self.redis.delete(DONE_KEY)
            self.enqueue_s.clear()

            first = time.time()
            count = self.args.paced_jobs if config.endswith("-paced") else self.args.jobs
            sent_at = self.send(config, count)
            send_s = time.time() - first
            wait_until(
                lambda: self.redis.llen(DONE_KEY) >= count,
                what=f"{count} {config} jobs to finish (worker log: {self.log.name})",
                timeout=300,
            )
            reports = [json.loads(raw) for raw in self.redis.lrange(DONE_KEY, 0, -1)]
        finally:
            # To the main process only: it passes SIGTERM on, and a second one kills the workers.
            workers.send_signal(signal.SIGTERM)
            workers.wait(timeout=60)
        stats = [json.loads(raw) for raw in self.redis.lrange(DONE_KEY + ":stats", 0, -1)]
        done = {report["id"]: report for report in reports}
        missing = set(sent_at) - set(done)
        if missing:
            raise SystemExit(f"bench: {len(missing)} {config} jobs never reported as finished")
        phase = Phase(
            config,
            len(sent_at),
            send_s,
            max(r["done"] for r in done.values()) - first,
            [done[job_id]["done"] - sent for job_id, sent in sent_at.items()],
        )
        if stats:
            phase.writes_per_commit = sum(s["writes"] for s in stats) / max(1, sum(s["transactions"] for s in stats))
        if not config.startswith("bare"):
            phase.hooks["before_enqueue"] = list(self.enqueue_s)
            for hook in HOOKS[1:]:
                phase.hooks[hook] = [done[job_id][hook] for job_id in sent_at]
        return phase

    def _clean(self) -> None:
        self.bare_broker.flush_all()
        actors.broker.flush_all()
        self.redis.delete(DONE_KEY, DONE_KEY + ":stats")
        admin = psycopg2.connect(os.environ["ADMIN_DATABASE_URL"])
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute("TRUNCATE job_events, job_status, workers")
        admin.close()


def run_throughput(args: argparse.Namespace) -> int:
    configs = args.configs.split(",")
    if not configs or set(configs) - set(CONFIGS):
        raise SystemExit(f"bench: --configs takes some of {', '.join(CONFIGS)}, not {args.configs!r}")
    systems = [config for config in configs if not config.startswith("bare")]
    bench = Bench(args)
    print(
        f"bench throughput: jobs={args.jobs} rounds={args.rounds} processes={args.processes} "
        f"threads={args.threads} batch={args.batch} paced={args.paced_jobs}@{args.rate:.0f}/s | {machine()}",
        flush=True,
    )
    phases: dict[str, list[Phase]] = {config: [] for config in configs}
    for round_no in range(1, args.rounds + 1):
        for config in configs:
            phase = bench.phase(config)
            phases[config].append(phase)
            hooks = " ".join(f"{hook}={1000 * statistics.median(values):.2f}ms" for hook, values in phase.hooks.items())
            print(
                f"  round {round_no} {config:<10} send {phase.send_rate:7.0f}/s  end-to-end {phase.throughput:6.0f}/s"
                f"  latency p50 {1000 * percentile(phase.latencies, 50):6.1f} ms"
                f" p99 {1000 * percentile(phase.latencies, 99):6.1f} ms  {hooks}"
                + (f" writes/commit={phase.writes_per_commit:.1f}" if phase.writes_per_commit else ""),
                flush=True,
            )

    def median_of(config: str, metric: Callable[[Phase], float]) -> float:
        return statistics.median(metric(phase) for phase in phases[config])

    print("\nmedians over the rounds:")
    print(f"  {'config':<10} {'send/s':>8} {'e2e/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for config in configs:
        print(
            f"  {config:<10} {median_of(config, lambda p: p.send_rate):8.0f}"
            f" {median_of(config, lambda p: p.throughput):8.0f}"
            f" {median_of(config, lambda p: 1000 * percentile(p.latencies, 50)):8.1f}"
            f" {median_of(config, lambda p: 1000 * percentile(p.latencies, 99)):8.1f}"
        )
    print("\nstatus hooks of the full system (medians over the rounds of each round's p50 / p99):")
    for config in systems:
        total = 0.0
        for hook in HOOKS:
            p50 = median_of(config, lambda p, h=hook: 1000 * percentile(p.hooks[h], 50))
            p99 = median_of(config, lambda p, h=hook: 1000 * percentile(p.hooks[h], 99))
            total += p50
            print(f"  {config:<10} {hook:<24} p50 {p50:6.3f} ms  p99 {p99:6.3f} ms")
        print(f"  {config:<10} {'awaited writes, in all':<24} p50 {total:6.3f} ms per job")

    def ratio(config: str, base: str, metric: Callable[[Phase], float]) -> str:
        if config not in phases or base not in phases:
            return "n/a"
        return f"{median_of(config, metric) / median_of(base, metric):.2f}"

    def added_p50_ms(config: str, base: str) -> str:
        if config not in phases or base not in phases:
            return "n/a"
        added = median_of(config, lambda p: percentile(p.latencies, 50)) - median_of(
            base, lambda p: percentile(p.latencies, 50)
        )
        return f"{1000 * added:+.1f} ms"

    def hooks_p50(config: str) -> str:
        if config not in phases:
            return "n/a"
        return f"{sum(median_of(config, lambda p, h=h: 1000 * percentile(p.hooks[h], 50)) for h in HOOKS):.3f} ms"

    throughput, send_rate = (lambda p: p.throughput), (lambda p: p.send_rate)
    print("\nfull system / bare Dramatiq, medians of this run (targets in brackets):")
    print(f"  end-to-end throughput, batch sends   {ratio('full-batch', 'bare', throughput)}x  [>= 0.85]")
    print(f"  end-to-end throughput, single sends  {ratio('full', 'bare', throughput)}x")
    print(f"  send rate, batch sends               {ratio('full-batch', 'bare', send_rate)}x  [>= 0.8]")
    print(f"  send rate, single sends              {ratio('full', 'bare', send_rate)}x")
    print(f"  awaited status writes p50, paced     {hooks_p50('full-paced')} per job  [<= 1 ms]")
    print(f"  awaited status writes p50, saturated {hooks_p50('full-batch')} per job")
    print(f"  added latency p50 per job, paced     {added_p50_ms('full-paced', 'bare-paced')}")
    print(f"\nworker logs: {bench.log.name}")
    return 0


def machine() -> str:
    return f"{platform.node()} {os.cpu_count()} cpus {platform.python_version()} {platform.machine()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", default="throughput", choices=("throughput", "scale", "ceiling"))
    parser.add_argument("--jobs", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rate", type=float, default=200.0, help="jobs/s of the paced configurations")
    parser.add_argument("--paced-jobs", type=int, default=400)
    parser.add_argument("--configs", default=",".join(CONFIGS), help="which configurations to alternate")
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()
    if args.rounds < 3 and args.mode == "throughput":
        parser.error("--rounds must be 3 or more: the figures are medians of alternated rounds")
    # The sender logs as a service would (JSON, INFO), into a file beside the workers' log.
    log = tempfile.NamedTemporaryFile("w", prefix="bench-sender-", suffix=".log", delete=False)
    configure_logging("json", os.environ["JOBS_LOG_LEVEL"], stream=log)
    db.migrate(os.environ["ADMIN_DATABASE_URL"])
    worker_limits.record(os.environ["ADMIN_DATABASE_URL"], Settings.from_env().worker_limits())
    if args.mode == "scale":
        from bench_scale import run_scale

        return run_scale(args)
    if args.mode == "ceiling":
        from bench_ceiling import run_ceiling

        return run_ceiling(args)
    return run_throughput(args)


if __name__ == "__main__":
    database.close()
    sys.exit(main())
