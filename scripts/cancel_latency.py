#!/usr/bin/env python3
"""Measures how long a running job takes to stop after its cancellation, with a real worker.

Starts `dramatiq actors` (1 process), then, N times: sends a 30 s job, waits until it runs,
cancels it and waits for the worker to record that it stopped. The latency is read from the
database's own timestamps (the `cancelled` event to the `execution_stopped` event).

Usage: scripts/cancel_latency.py [--samples N] [--after-start-ms MS]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from polling import wait_until

import actors  # configures the database and the broker
from db.connection import database
from db.fixtures import seed
from jobs import service
from middleware.log_format import configure_logging


def event_time(job_id: str, event: str):
    row = database.execute_sql(
        "SELECT created_at FROM job_events WHERE job_id = %s::uuid AND event = %s", (job_id, event)
    ).fetchone()
    return row and row[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--after-start-ms", type=int, default=200, help="how long the job runs before the cancel")
    args = parser.parse_args()
    configure_logging("console", "WARNING")
    user = seed(actors.settings.admin_database_url)["organizations"][0]["users"][1]["id"]
    log = tempfile.NamedTemporaryFile(prefix="cancel-latency-", suffix=".log", delete=False)
    worker = subprocess.Popen(
        [sys.executable, "-m", "dramatiq", "actors", "--processes", "1", "--threads", "4"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "JOBS_LOG_FORMAT": "json", "DATABASE_URL": actors.settings.worker_database_url},
    )
    latencies = []
    try:
        for _ in range(args.samples):
            job_id = service.send_job("test_job", user_id=user, args={"delay_ms": 30_000})
            wait_until(lambda j=job_id: event_time(j, "started"), what="the job to start", timeout=30)
            time.sleep(args.after_start_ms / 1000)  # let it run, as a user would before cancelling
            service.cancel_job(job_id, user)
            stopped = wait_until(
                lambda j=job_id: event_time(j, "execution_stopped"), what="the job to stop", timeout=10
            )
            latencies.append((stopped - event_time(job_id, "cancelled")).total_seconds() * 1000)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    latencies.sort()
    print(
        f"cancel -> stopped, {len(latencies)} samples, cancelled {args.after_start_ms} ms after start: "
        f"p50 {statistics.median(latencies):.0f} ms, max {latencies[-1]:.0f} ms (worker log: {log.name})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
