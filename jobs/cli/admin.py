"""Setting up and running: migrate, seed, worker, demo, and the recovery passes by hand."""

from __future__ import annotations

import argparse
import os
import sys

from middleware.settings import Settings

from .common import connect, print_json


def register(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser("migrate", help="create the database if needed and apply new migrations")
    command.set_defaults(run=_migrate)

    command = commands.add_parser("seed", help="create the fixture organizations, users and courses")
    command.add_argument("--json", action="store_true")
    command.set_defaults(run=_seed)

    command = commands.add_parser("reap", help="take back the jobs of lost workers now (workers also do it)")
    command.add_argument("--json", action="store_true")
    command.set_defaults(run=_reap)

    command = commands.add_parser("reconcile", help="publish again waiting jobs whose messages Redis lost")
    command.add_argument(
        "--grace-s", type=float, help="leave jobs touched this recently (default: the recovery window)"
    )
    command.add_argument("--json", action="store_true")
    command.set_defaults(run=_reconcile)

    commands.add_parser(
        "worker", help="run workers: `dramatiq actors` with our log format in every process (flags are passed on)"
    )

    command = commands.add_parser("demo", help="start workers, send a mix of jobs, show their statuses live")
    command.add_argument("--processes", type=int, default=2)
    command.add_argument("--threads", type=int, default=4)
    command.add_argument("--timeout", type=float, default=120.0)
    command.add_argument(
        "--port", type=int, default=8000, help="the HTTP server's port on 127.0.0.1 (default 8000; 0: any free one)"
    )
    command.set_defaults(run=_demo)


def exec_worker(dramatiq_args: list[str]) -> None:
    os.execv(sys.executable, [sys.executable, "-m", "jobs.worker", *dramatiq_args])


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    import db
    from db import retention, worker_limits

    applied = db.migrate(settings.admin_database_url)
    print("applied: " + ", ".join(applied) if applied else "the schema is up to date")
    # The database's rules for the workers' calls come from this configuration: said when they
    # change (running migrate again with another configuration changes them).
    limits = settings.worker_limits()
    if worker_limits.record(settings.admin_database_url, limits):
        print(
            f"workers: leases of at most {limits.max_lease_ms / 1000:g} s, at most {limits.max_deliveries}"
            f" deliveries lost, reschedules of at most {limits.max_delay_ms / 1000:g} s (worker_limits)"
        )
    kept = settings.retention()
    if retention.record(settings.admin_database_url, kept):
        print(f"retention of finished jobs: {retention.describe(kept)} (job_retention)")
    return 0


def _seed(args: argparse.Namespace, settings: Settings) -> int:
    from db.fixtures import seed

    connect(settings)
    ids = seed(settings.admin_database_url)
    if args.json:
        print_json(ids)
        return 0
    for org in ids["organizations"]:
        print(f"{org['name']}  {org['id']}")
        for user in org["users"]:
            print(f"  {user['role']:<7} {user['email']:<22} {user['id']}")
        for course in org["courses"]:
            print(f"  course  {course['title']:<22} {course['id']}")
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from ..demo import run_demo

    if not 0 <= args.port <= 65_535:
        raise ValueError(f"--port must be from 0 to 65535, not {args.port}")
    return run_demo(settings, processes=args.processes, threads=args.threads, timeout=args.timeout, port=args.port)


def _reap(args: argparse.Namespace, settings: Settings) -> int:
    from actors import broker
    from middleware.reaper import recover_lost_jobs

    reaped = recover_lost_jobs(broker, window_s=settings.recovery_window_s)
    if args.json:
        print_json([job.__dict__ for job in reaped])
    else:
        for job in reaped:
            print(f"{job.job_id}  {job.job_type:<11} -> {job.outcome}")
        print(f"{len(reaped)} job(s) of lost workers taken back")
    return 0


def _reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from actors import broker
    from middleware.reconcile import reconcile

    grace_s = settings.recovery_window_s if args.grace_s is None else args.grace_s
    sent = reconcile(broker, grace_s=grace_s)
    if args.json:
        print_json([job.job_id for job in sent])
    else:
        for job in sent:
            if job.outcome == "failed":
                print(f"{job.job_id}  {job.job_type:<11} failed: its stored arguments can't be sent (too deep)")
            else:
                print(f"{job.job_id}  {job.job_type:<11} {job.outcome}: published again")
        print(f"{len(sent)} waiting job(s) were missing from the broker")
    return 0
