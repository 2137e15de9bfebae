"""Operating the system: its numbers once (`metrics`, as /metrics serves them) and retention
(`prune`)."""

from __future__ import annotations

import argparse
import re
import sys

from db.excerpt import excerpt
from middleware.settings import Settings

from .common import UsageError, connect, print_json

UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
FINISHED = ("completed", "failed", "cancelled")


def register(commands: argparse._SubParsersAction) -> None:
    # Operators' commands, of the system rather than of a tenant's jobs: no --as.
    command = commands.add_parser("metrics", help="print the system's numbers once, as GET /metrics serves them")
    command.set_defaults(run=_metrics)

    command = commands.add_parser(
        "prune", help="delete finished jobs (and their events) past their retention, or older than --older-than"
    )
    command.add_argument(
        "--older-than",
        metavar="AGE",
        help="jobs that ended more than AGE ago: 30d, 12h, 90m, 45s (default: each outcome's retention)",
    )
    command.add_argument(
        "--status", metavar="S[,S...]", help="of these outcomes only: completed, failed, cancelled (default: all)"
    )
    command.add_argument("--dry-run", action="store_true", help="count what would go, delete nothing")
    command.add_argument("--batch", type=int, default=500, help="jobs per transaction (default 500; at most 10000)")
    command.add_argument("--json", action="store_true")
    command.set_defaults(run=_prune)


def _metrics(args: argparse.Namespace, settings: Settings) -> int:
    from ..metrics import exposition, known_job_types

    connect(settings)
    sys.stdout.write(exposition(settings, known_job_types()).decode())
    return 0


def _prune(args: argparse.Namespace, settings: Settings) -> int:
    from db import prune, retention

    statuses = _statuses(args.status)
    older_than_ms = None if args.older_than is None else _age_ms(args.older_than)
    if not 1 <= args.batch <= prune.MAX_BATCH:
        raise UsageError(f"--batch must be from 1 to {prune.MAX_BATCH}, not {args.batch}")
    # As the administrator: job_prune, with an age of the caller's choosing, is nobody else's.
    done = prune.prune(
        settings.admin_database_url,
        settings.db_limits(),
        statuses=statuses,
        older_than_ms=older_than_ms,
        batch=args.batch,
        dry_run=args.dry_run,
    )
    shown = statuses or list(FINISHED)
    if args.json:
        print_json(
            {
                "dry_run": args.dry_run,
                "jobs": {s: done.jobs[s] for s in shown},
                "events": {s: done.events[s] for s in shown},
                "batches": done.batches,
            }
        )
        return 0
    verb = "would delete" if args.dry_run else "deleted"
    for status in shown:
        print(f"{status:<9} {verb} {done.jobs[status]} jobs, {done.events[status]} events")
    if older_than_ms is None:
        connect(settings)
        print(f"(by the retention the database holds: {retention.describe(retention.held())})")
    return 0


def _statuses(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [name.strip() for name in value.split(",")]
    unknown = [name for name in names if name not in FINISHED]
    if unknown or not names:
        raise UsageError(
            f"--status takes finished outcomes ({', '.join(FINISHED)}), comma-separated, not {excerpt(value)}:"
            " a waiting or running job is never pruned"
        )
    return sorted(set(names), key=FINISHED.index)


def _age_ms(value: str) -> int:
    found = re.fullmatch(r"(\d{1,9})(ms|s|m|h|d)", value.strip())
    if not found or int(found[1]) == 0:
        raise UsageError(f"--older-than takes an age above 0 (30d, 12h, 90m, 45s, 500ms), not {excerpt(value)}")
    return int(found[1]) * UNITS_MS[found[2]]
