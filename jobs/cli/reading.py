"""Reading jobs: show one, list many."""

from __future__ import annotations

import argparse

from middleware.settings import Settings

from ..errors import JobNotFound
from .common import connect, print_json, resolve_user


def register(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser("show", help="a job's status and history")
    command.add_argument("job_id")
    command.add_argument(
        "--as", dest="viewer", help="user id or email: see only what that user may see (default: every tenant)"
    )
    command.add_argument("--json", action="store_true")
    command.set_defaults(run=_show)

    command = commands.add_parser("list", help="jobs, newest first")
    command.add_argument(
        "--as", dest="viewer", help="user id or email: see only what that user may see (default: every tenant)"
    )
    command.add_argument("--status")
    command.add_argument("--user", help="user id or email")
    command.add_argument("--org", help="organization id")
    command.add_argument("--limit", type=int, default=50)
    command.add_argument("--json", action="store_true")
    command.set_defaults(run=_list)


def _show(args: argparse.Namespace, settings: Settings) -> int:
    from db import queries

    from .. import service

    connect(settings)
    if args.viewer:
        job, history = service.show_job(args.job_id, as_user=resolve_user(args.viewer))
    else:
        job = queries.get_job(args.job_id)
        if job is None:
            raise JobNotFound(args.job_id)
        history = queries.job_events(args.job_id)
    if args.json:
        print_json({"job": job, "events": history})
        return 0
    for key, value in job.items():
        if value is not None and key != "error_stack":
            print(f"{key:>16}  {value}")
    print("\nhistory:")
    for event in history:
        change = f"{event['from_status'] or ''} -> {event['to_status']}" if event["to_status"] else ""
        notes = [f"by {event['actor_user_id']}"] if event["actor_user_id"] else []
        notes += [f"{key}={value}" for key, value in event["details"].items()]
        print(
            f"  {event['created_at']:%H:%M:%S.%f}  {event['event']:<20} {change:<24} attempt {event['attempt']}"
            f"  {' '.join(notes)}".rstrip()
        )
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from db import queries

    from .. import service

    connect(settings)
    user = resolve_user(args.user) if args.user else None
    if args.viewer:
        jobs = service.list_jobs(
            as_user=resolve_user(args.viewer),
            status=args.status,
            user_id=user,
            organization_id=args.org,
            limit=args.limit,
        )
    else:
        jobs = queries.list_jobs(status=args.status, user_id=user, organization_id=args.org, limit=args.limit)
    if args.json:
        print_json(jobs)
        return 0
    for job in jobs:
        print(
            f"{job['job_id']}  {job['job_type']:<11} {job['status']:<10} attempt {job['attempts']}"
            f"  {job['progress']:>3}%  {job['created_at']:%Y-%m-%d %H:%M:%S}"
        )
    return 0
