"""The `jobs` command: migrate, seed, send, show, list, worker, demo."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import peewee

from middleware.log_format import configure_logging
from middleware.settings import Settings

from .errors import DatabaseUnavailable, JobError, JobNotFound, UnknownJobType

EXIT_USAGE = 2
# Jobs whose pending rows `jobs send --count N` writes in one round trip (each batch all or none).
SEND_BATCH = 1_000
EXIT_ERROR = 1


class UsageError(JobError):
    pass


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:
        # Everything after `worker` belongs to dramatiq, flags included.
        _exec_worker(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        configure_logging(settings.log_format if args.command == "demo" else "console", args.log_level)
        return args.run(args, settings) or 0
    except (peewee.OperationalError, DatabaseUnavailable) as error:
        print(f"error: database unreachable: {str(error).strip()}", file=sys.stderr)
        return EXIT_ERROR
    except (JobError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobs", description=__doc__)
    parser.add_argument("--log-level", default=os.environ.get("JOBS_LOG_LEVEL", "ERROR"))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    command = commands.add_parser("migrate", help="create the database if needed and apply new migrations")
    command.set_defaults(run=_migrate)

    command = commands.add_parser("seed", help="create the fixture organizations, users and courses")
    command.add_argument("--json", action="store_true")
    command.set_defaults(run=_seed)

    command = commands.add_parser("send", help="send a job on behalf of a user")
    command.add_argument("job_type")
    command.add_argument("--as", dest="user", required=True, help="user id or email")
    command.add_argument("--args", default="{}", help="the job's arguments, as a JSON object")
    command.add_argument("--delay-ms", type=int)
    command.add_argument("--count", type=int, default=1)
    command.add_argument("--json", action="store_true")
    command.set_defaults(run=_send)

    command = commands.add_parser("cancel", help="cancel a job on behalf of its owner or an org admin")
    command.add_argument("job_id")
    command.add_argument("--as", dest="user", required=True, help="user id or email")
    command.add_argument("--reason")
    command.add_argument("--json", action="store_true")
    command.set_defaults(run=_cancel)

    command = commands.add_parser("reap", help="take back the jobs of lost workers now (workers also do it)")
    command.add_argument("--json", action="store_true")
    command.set_defaults(run=_reap)

    command = commands.add_parser("reconcile", help="publish again waiting jobs whose messages Redis lost")
    command.add_argument(
        "--grace-s", type=float, help="leave jobs touched this recently (default: the recovery window)"
    )
    command.add_argument("--json", action="store_true")
    command.set_defaults(run=_reconcile)

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

    commands.add_parser("worker", help="run workers: the same as `dramatiq actors` (flags are passed on)")

    command = commands.add_parser("demo", help="start workers, send a mix of jobs, show their statuses live")
    command.add_argument("--processes", type=int, default=2)
    command.add_argument("--threads", type=int, default=4)
    command.add_argument("--timeout", type=float, default=120.0)
    command.set_defaults(run=_demo)
    return parser


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _database(settings: Settings) -> None:
    import db

    db.configure(settings.database_url, settings.db_limits())


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    import db

    applied = db.migrate(settings.admin_database_url)
    print("applied: " + ", ".join(applied) if applied else "the schema is up to date")
    return 0


def _seed(args: argparse.Namespace, settings: Settings) -> int:
    from db.fixtures import seed

    _database(settings)
    ids = seed(settings.admin_database_url)
    if args.json:
        _print_json(ids)
        return 0
    for org in ids["organizations"]:
        print(f"{org['name']}  {org['id']}")
        for user in org["users"]:
            print(f"  {user['role']:<7} {user['email']:<22} {user['id']}")
        for course in org["courses"]:
            print(f"  course  {course['title']:<22} {course['id']}")
    return 0


def resolve_user(value: str) -> str:
    """A user id as given, or the id of the user with that email."""
    if "@" not in value:
        return value
    from db.models import User

    user = User.get_or_none(User.email == value)
    if user is None:
        raise UsageError(f"no user with email {value}")
    return str(user.id)


def _send(args: argparse.Namespace, settings: Settings) -> int:
    from . import service

    try:
        job_args = json.loads(args.args)
    except json.JSONDecodeError as error:
        raise UsageError(f"--args is not valid JSON: {error}") from None
    if args.count < 1:
        raise UsageError("--count must be 1 or more")
    from actors import JOB_TYPES  # configures the database and the broker

    if args.job_type not in JOB_TYPES:
        raise UnknownJobType(args.job_type, list(JOB_TYPES))
    user = resolve_user(args.user)
    if args.count == 1:
        ids = [service.send_job(args.job_type, user_id=user, args=job_args, delay_ms=args.delay_ms)]
    else:
        ids = []
        for start in range(0, args.count, SEND_BATCH):
            size = min(SEND_BATCH, args.count - start)
            batch = [dict(job_args) for _ in range(size)] if isinstance(job_args, dict) else [job_args] * size
            ids += service.send_jobs(args.job_type, batch, user_id=user, delay_ms=args.delay_ms)
    if args.json:
        _print_json(ids)
    else:
        print("\n".join(ids))
    return 0


def _cancel(args: argparse.Namespace, settings: Settings) -> int:
    import actors  # noqa: F401 - configures the database, and the broker that carries the abort

    from . import service

    result = service.cancel_job(args.job_id, resolve_user(args.user), args.reason)
    if args.json:
        _print_json(result.__dict__)
    elif result.outcome == "already_cancelled":
        print(f"job {result.job_id} was already cancelled: nothing changed")
    else:
        running = " (it was running: its worker is being interrupted)" if result.interrupting else ""
        print(f"job {result.job_id} cancelled{running}")
    return 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    from db import queries

    from . import service

    _database(settings)
    if args.viewer:
        job, history = service.show_job(args.job_id, as_user=resolve_user(args.viewer))
    else:
        job = queries.get_job(args.job_id)
        if job is None:
            raise JobNotFound(args.job_id)
        history = queries.job_events(args.job_id)
    if args.json:
        _print_json({"job": job, "events": history})
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

    from . import service

    _database(settings)
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
        _print_json(jobs)
        return 0
    for job in jobs:
        print(
            f"{job['job_id']}  {job['job_type']:<11} {job['status']:<10} attempt {job['attempts']}"
            f"  {job['progress']:>3}%  {job['created_at']:%Y-%m-%d %H:%M:%S}"
        )
    return 0


def _exec_worker(dramatiq_args: list[str]) -> None:
    os.execv(sys.executable, [sys.executable, "-m", "dramatiq", "actors", *dramatiq_args])


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from .demo import run_demo

    return run_demo(settings, processes=args.processes, threads=args.threads, timeout=args.timeout)


def _reap(args: argparse.Namespace, settings: Settings) -> int:
    from actors import broker
    from middleware.reaper import recover_lost_jobs

    reaped = recover_lost_jobs(broker, window_s=settings.recovery_window_s, max_deliveries=settings.max_deliveries)
    if args.json:
        _print_json([job.__dict__ for job in reaped])
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
        _print_json([job.job_id for job in sent])
    else:
        for job in sent:
            print(f"{job.job_id}  {job.job_type:<11} {job.outcome}: published again")
        print(f"{len(sent)} waiting job(s) were missing from the broker")
    return 0
