#!/usr/bin/env python3
"""Benchmarks against the real Redis and PostgreSQL; a benchmark, not a test.

  scripts/bench.py [throughput] [--jobs N] [--rounds R] [--processes P] [--threads T] [--batch B]
                   [--rate R] [--paced-jobs N] [--configs bare,full,...]
  scripts/bench.py scale [--sizes 10000,100000,1000000] [--samples S]
  scripts/bench.py ceiling [--jobs N] [--threads T] [--rounds R]
  scripts/bench.py rules [--jobs N] [--rounds R]

throughput: the same trivial job through real `dramatiq` worker processes, in configurations
alternated within one run (bare, naive, full, full-batch, bare, naive, ...): `bare` is Dramatiq
with no status middleware; `naive` the naive prototype this system is measured against (three
autocommit statements per job: an INSERT at send, an UPDATE to active, an UPDATE to completed;
no event, no guard, no group commit; same worker shape); `full` this system sending one job at
a time, `full-batch` this system sending with send_jobs in batches of B; `bare-paced` and
`full-paced` send at --rate jobs/s, the cost of a job on a machine that is not saturated.
Medians over the rounds of: send rate, end-to-end throughput (first send to last completion),
latency per job (send to completion) p50/p99, CPU per job (the whole machine's, from
/proc/stat, and our processes' alone: scripts/bench_cpu.py), the end-to-end ceiling that CPU
per job allows on this machine's cores and each throughput as a fraction of it, and for the
full system the time inside each status hook and the writes per commit. Then the ratios
beside the targets of issue 14. Every line says the load average: the machine is shared.

scale: job_status filled by SQL to each size, then the send rate and the latency of the
product's reads (show and list, as a user, under row-level security) at that size.

ceiling: the three awaited writes of each job with no broker and no worker, on the same
database: what PostgreSQL alone allows on this machine (scripts/bench_ceiling.py).

rules: the server's CPU per job of the worker's two writes and of a send, with each rule the
database enforces taken away in turn (scratch databases), against the naive prototype's
statements: what each guarantee costs PostgreSQL (scripts/bench_rules.py).

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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_env import own_servers  # noqa: E402

from middleware.settings import Settings  # noqa: E402

#: Redis namespace of the benchmark (BENCH_NAMESPACE: two benchmarks on one Redis at once).
NAMESPACE = os.environ.get("BENCH_NAMESPACE", "jobs-bench")


def _bench_env() -> dict[str, str]:
    """The environment of the benchmark: its own database and Redis namespace."""
    servers = own_servers("_bench", NAMESPACE)
    return {
        **servers,
        "BENCH_BARE_NAMESPACE": NAMESPACE + "-bare",
        # The naive prototype has no roles: it writes its own table as its owner.
        "BENCH_NAIVE_DATABASE_URL": servers["ADMIN_DATABASE_URL"],
        "JOBS_LOG_FORMAT": "json",
        "JOBS_LOG_LEVEL": os.environ.get("JOBS_LOG_LEVEL", "INFO"),
    }


os.environ.update(_bench_env())

import dramatiq  # noqa: E402
import psycopg2  # noqa: E402
import redis  # noqa: E402
from bench_cpu import descendants, load_average, machine_cpu_s, snapshot, spent  # noqa: E402
from bench_naive import NAIVE_TABLE  # noqa: E402
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

DONE_KEY = NAMESPACE + ":done"
CONFIGS = ("bare", "naive", "full", "full-batch", "bare-paced", "full-paced")
#: The cores of this machine, all of which a run may use: the ceiling is CORES / CPU per job.
CORES = os.cpu_count() or 1
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
    #: CPU seconds over the timed part of the phase: the whole machine's, and our processes'.
    machine_cpu_s: float = 0.0
    own_cpu_s: float = 0.0
    #: Our processes' CPU seconds by part: sender, workers, postgres, redis.
    parts_s: dict[str, float] = field(default_factory=dict)
    #: The load average when the phase ended (1, 5, 15 minutes).
    load: str = ""

    @property
    def cpu_ms_per_job(self) -> float:
        return 1000 * self.machine_cpu_s / self.sends

    @property
    def own_cpu_ms_per_job(self) -> float:
        return 1000 * self.own_cpu_s / self.sends

    @property
    def ceiling(self) -> float:
        """End-to-end jobs/s that this machine's cores allow at this CPU per job (our processes')."""
        return CORES * 1000 / self.own_cpu_ms_per_job if self.own_cpu_s else 0.0

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
        self.naive = psycopg2.connect(os.environ["BENCH_NAIVE_DATABASE_URL"])
        self.naive.autocommit = True
        with self.naive.cursor() as cursor:
            cursor.execute(NAIVE_TABLE)
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
            elif config == "naive":
                sent_at[self._send_naive()] = now
            else:
                sent_at[service.send_job("test_job", user_id=self.user)] = now
        return sent_at

    def _send_naive(self) -> str:
        """The naive prototype's send: its row inserted (autocommit), then its message published."""
        message = self.bare_actor.message()
        with self.naive.cursor() as cursor:
            cursor.execute(
                "INSERT INTO naive_jobs (job_id, job_type, user_id, args, status) VALUES (%s, %s, %s, %s, 'pending')",
                (message.message_id, message.actor_name, self.user, json.dumps(message.kwargs)),
            )
        self.bare_broker.enqueue(message)
        return message.message_id

    def _ours(self, workers: int) -> dict[str, list[int]]:
        """Our processes, by part: this one (the sender), the worker processes, the sessions of the
        benchmark's database and PostgreSQL's WAL writer (each commit's flush), Redis."""
        with self.naive.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() OR backend_type = 'walwriter'"
            )
            backends = [pid for (pid,) in cursor.fetchall()]
        return {
            "sender": [os.getpid()],
            "workers": descendants(workers),
            "postgres": backends,
            "redis": [int(self.redis.info("server")["process_id"])],
        }

    def phase(self, config: str) -> Phase:
        self._clean()
        env = {
            **os.environ,
            "DATABASE_URL": os.environ["WORKER_DATABASE_URL"],  # workers log in as workers
            "BENCH_CONFIG": "bare" if config.startswith("bare") else config if config == "naive" else "full",
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

            before = {part: snapshot(pids) for part, pids in self._ours(workers.pid).items()}
            machine_before = machine_cpu_s()
            first = time.time()
            count = self.args.paced_jobs if config.endswith("-paced") else self.args.jobs
            sent_at = self.send(config, count)
            send_s = time.time() - first
            wait_until(
                lambda: self.redis.llen(DONE_KEY) >= count,
                what=f"{count} {config} jobs to finish (worker log: {self.log.name})",
                timeout=300,
            )
            machine_s = machine_cpu_s() - machine_before
            parts_s = {part: spent(before[part], snapshot(pids)) for part, pids in self._ours(workers.pid).items()}
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
            machine_cpu_s=machine_s,
            own_cpu_s=sum(parts_s.values()),
            parts_s=parts_s,
            load=load_average(),
        )
        if stats:
            phase.writes_per_commit = sum(s["writes"] for s in stats) / max(1, sum(s["transactions"] for s in stats))
        if config.startswith("full"):
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
            cursor.execute("TRUNCATE job_events, job_status, workers, naive_jobs")
        admin.close()


def run_throughput(args: argparse.Namespace) -> int:
    configs = args.configs.split(",")
    if not configs or set(configs) - set(CONFIGS):
        raise SystemExit(f"bench: --configs takes some of {', '.join(CONFIGS)}, not {args.configs!r}")
    systems = [config for config in configs if config.startswith("full")]
    bench = Bench(args)
    print(
        f"bench throughput: jobs={args.jobs} rounds={args.rounds} processes={args.processes} "
        f"threads={args.threads} batch={args.batch} paced={args.paced_jobs}@{args.rate:.0f}/s | {machine()}"
        f" | load {load_average()}",
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
                f" p99 {1000 * percentile(phase.latencies, 99):6.1f} ms"
                f"  cpu/job {phase.cpu_ms_per_job:.2f} ms (ours {phase.own_cpu_ms_per_job:.2f})"
                f"  load {phase.load}  {hooks}"
                + (f" writes/commit={phase.writes_per_commit:.1f}" if phase.writes_per_commit else ""),
                flush=True,
            )

    def median_of(config: str, metric: Callable[[Phase], float]) -> float:
        return statistics.median(metric(phase) for phase in phases[config])

    print(f"\nmedians over the rounds (cpu/job in ms; ceiling: {CORES} cores / our processes' cpu per job):")
    print(
        f"  {'config':<10} {'send/s':>8} {'e2e/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'cpu/job':>8} {'ours':>6} {'ceiling':>8} {'e2e/ceil':>8}"
    )
    for config in configs:
        print(
            f"  {config:<10} {median_of(config, lambda p: p.send_rate):8.0f}"
            f" {median_of(config, lambda p: p.throughput):8.0f}"
            f" {median_of(config, lambda p: 1000 * percentile(p.latencies, 50)):8.1f}"
            f" {median_of(config, lambda p: 1000 * percentile(p.latencies, 99)):8.1f}"
            f" {median_of(config, lambda p: p.cpu_ms_per_job):8.2f}"
            f" {median_of(config, lambda p: p.own_cpu_ms_per_job):6.2f}"
            f" {median_of(config, lambda p: p.ceiling):8.0f}"
            f" {median_of(config, lambda p: p.throughput / p.ceiling if p.ceiling else 0.0):8.2f}"
        )
    print("\nour processes' cpu per job, by part (ms, medians over the rounds):")
    for config in configs:
        parts = phases[config][0].parts_s
        print(
            f"  {config:<10} "
            + "  ".join(
                f"{part} {median_of(config, lambda p, n=part: 1000 * p.parts_s[n] / p.sends):.2f}" for part in parts
            )
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
        return f"{median_of(config, metric) / median_of(base, metric):.2f}x"

    def difference(config: str, base: str, metric: Callable[[Phase], float]) -> str:
        if config not in phases or base not in phases:
            return "n/a"
        return f"{median_of(config, metric) - median_of(base, metric):+.2f} ms"

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
    cpu, own = (lambda p: p.cpu_ms_per_job), (lambda p: p.own_cpu_ms_per_job)
    print("\nthe full system against the naive prototype and bare Dramatiq, medians of this run [targets]:")
    print(f"  end-to-end, batch sends / naive          {ratio('full-batch', 'naive', throughput):>9}  [>= 1.0x]")
    print(f"  end-to-end, single sends / naive         {ratio('full', 'naive', throughput):>9}")
    print(f"  send rate, single sends / naive          {ratio('full', 'naive', send_rate):>9}  [>= 0.9x]")
    print(f"  send rate, batch sends / naive           {ratio('full-batch', 'naive', send_rate):>9}")
    print(f"  cpu/job, single sends - naive (machine)  {difference('full', 'naive', cpu):>9}  [<= +0.3 ms]")
    print(f"  cpu/job, single sends - naive (ours)     {difference('full', 'naive', own):>9}  [<= +0.3 ms]")
    print(f"  cpu/job, batch sends - naive (machine)   {difference('full-batch', 'naive', cpu):>9}  [<= +0.3 ms]")
    print(f"  cpu/job, batch sends - naive (ours)      {difference('full-batch', 'naive', own):>9}  [<= +0.3 ms]")
    print(f"  awaited status writes p50, paced         {hooks_p50('full-paced'):>9} per job  [<= 1 ms]")
    print(f"  added latency p50 per job, paced         {added_p50_ms('full-paced', 'bare-paced'):>9}  [<= 3 ms]")
    print(f"  awaited status writes p50, saturated     {hooks_p50('full-batch'):>9} per job")
    print(f"  end-to-end, batch sends / bare           {ratio('full-batch', 'bare', throughput):>9}")
    print(f"  naive end-to-end / bare                  {ratio('naive', 'bare', throughput):>9}")
    print(f"\nload average at the end: {load_average()}")
    print(f"worker logs: {bench.log.name}")
    return 0


def machine() -> str:
    return f"{platform.node()} {os.cpu_count()} cpus {platform.python_version()} {platform.machine()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", default="throughput", choices=("throughput", "scale", "ceiling", "rules"))
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
    if args.rounds < 3 and args.mode in ("throughput", "rules"):
        parser.error("--rounds must be 3 or more: the figures are medians of alternated rounds")
    if args.rounds < 1:
        parser.error("--rounds must be 1 or more")
    if args.jobs < 1:
        parser.error("--jobs must be 1 or more")
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
    if args.mode == "rules":
        from bench_rules import run_rules

        return run_rules(args)
    return run_throughput(args)


if __name__ == "__main__":
    database.close()
    sys.exit(main())
