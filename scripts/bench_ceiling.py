"""The ceiling mode of scripts/bench.py: what PostgreSQL alone allows, with no broker and no worker.

--threads threads each take jobs through the three awaited writes of a job (pending, active,
completed), on this machine's database, with the same transition functions as the system:
once with a transaction per write (the naive way), once as the system writes them (pending rows
in batches, starts and ends through group commit). It reports jobs/s and the CPU time the whole
machine spent per job, so the throughput figures of the other modes can be read against it;
then what one round trip costs from one thread, back to back and at a gentle pace.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import uuid

from bench_cpu import machine_cpu_s

from db import transitions
from db.connection import database
from db.fixtures import seed
from db.group_commit import GroupCommit

#: The worker process the writes stand for: this one, as middleware.identity names a worker.
WORKER = f"ceiling:{os.getpid()}:{uuid.uuid4().hex[:8]}"

BATCH = 100


def enqueue_one(job_id: str, user: str) -> None:
    transitions.record_enqueued_many(
        job_type="test_job",
        queue="default",
        max_attempts=4,
        delay_ms=None,
        jobs=[transitions.Pending(job_id, user, None, [], {}, {})],
    )


def run_once(jobs: int, threads: int, user: str, grouped: bool) -> tuple[float, float]:
    ids = [str(uuid.uuid4()) for _ in range(jobs)]
    commits = GroupCommit() if grouped else None
    # The writes stand for a worker process's: it starts jobs only under a live lease, which the
    # database gives up to its longest (30 s unless configured: a run lasts seconds), and under an
    # id of its own (the first heartbeat binds an id to this process's worker token).
    transitions.heartbeat(WORKER, "bench", os.getpid(), lease_ms=3_600_000, broker_id=None)
    # As in the system, jobs are sent while others run: the sender's batches and the workers'
    # writes compete; a worker takes a job once its pending row is committed.
    recorded = threading.Condition()
    committed = 0 if grouped else jobs

    def send() -> None:
        nonlocal committed
        try:
            for start in range(0, jobs, BATCH):
                batch = [transitions.Pending(job_id, user, None, [], {}, {}) for job_id in ids[start : start + BATCH]]
                transitions.record_enqueued_many(
                    job_type="test_job", queue="default", max_attempts=4, delay_ms=None, jobs=batch
                )
                with recorded:
                    committed = start + len(batch)
                    recorded.notify_all()
        finally:
            database.close()

    def work(first: int) -> None:
        try:
            for index in range(first, jobs, threads):
                job_id = ids[index]
                if grouped:
                    with recorded:
                        recorded.wait_for(lambda i=index: i < committed)
                else:
                    enqueue_one(job_id, user)
                transitions.mark_active(job_id, f"{WORKER}/1", via=commits)
                transitions.mark_completed(job_id, 1, f"{WORKER}/1", None, via=commits)
        finally:
            database.close()

    everyone = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    if grouped:
        everyone.append(threading.Thread(target=send))
    cpu, started = machine_cpu_s(), time.perf_counter()
    for thread in everyone:
        thread.start()
    for thread in everyone:
        thread.join()
    elapsed = time.perf_counter() - started
    return jobs / elapsed, 1000 * (machine_cpu_s() - cpu) / jobs


def round_trips(user: str, calls: int = 400) -> dict[str, tuple[float, float]]:
    """p50 in ms of a SELECT 1 and of a pending row's insert, back to back and with 5 ms pauses
    between calls (as at 200 jobs/s): what one round trip costs when the machine is busy or idle."""
    results = {}
    for pause in (0.0, 0.005):
        select, insert = [], []
        for _ in range(calls):
            time.sleep(pause)  # the load's own pace, not a wait for an outcome
            started = time.perf_counter()
            database.execute_sql("SELECT 1").fetchone()
            select.append(time.perf_counter() - started)
            time.sleep(pause)
            started = time.perf_counter()
            enqueue_one(str(uuid.uuid4()), user)
            insert.append(time.perf_counter() - started)
        results[f"{1000 * pause:.0f} ms pauses"] = (
            1000 * sorted(select)[calls // 2],
            1000 * sorted(insert)[calls // 2],
        )
    return results


def run_ceiling(args: argparse.Namespace) -> int:
    user = seed(os.environ["ADMIN_DATABASE_URL"])["organizations"][0]["users"][1]["id"]
    print(f"bench ceiling: jobs={args.jobs} threads={args.threads}, alternated over {args.rounds} rounds")
    results: dict[str, list[tuple[float, float]]] = {"one transaction per write": [], "as the system writes": []}
    for _ in range(args.rounds):
        for label, grouped in (("one transaction per write", False), ("as the system writes", True)):
            results[label].append(run_once(args.jobs, args.threads, user, grouped))
    for label, runs in results.items():
        rates = sorted(rate for rate, _ in runs)
        cpus = sorted(cpu for _, cpu in runs)
        print(f"  {label:<26} {rates[len(rates) // 2]:7.0f} jobs/s  machine CPU {cpus[len(cpus) // 2]:.2f} ms per job")
    print("one round trip, p50, from one thread:")
    for label, (select, insert) in round_trips(user).items():
        print(f"  {label:<26} SELECT 1 {select:.2f} ms  pending row {insert:.2f} ms")
    return 0
