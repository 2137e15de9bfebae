"""The whole system at a glance: its worker processes, and its jobs counted, beside the broker's
queues."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from datetime import datetime, timedelta

from db.redact import mask_url
from middleware.settings import Settings

from ..broker_depth import Depth, broker_depth
from .common import connect, format_age, format_time, print_json, printable, terminal_width
from .table import Column, table

STATUSES = ("pending", "active", "retrying", "completed", "failed", "cancelled")
# Workers whose last heartbeat is older than this are left out unless asked for (--all): every
# boot of a process adds a row.
RECENT = timedelta(hours=1)


def register(commands: argparse._SubParsersAction) -> None:
    # Operators' commands only, of the system rather than of a tenant's jobs: they take neither
    # --as nor --operator.
    command = commands.add_parser("workers", help="the worker processes: leases, heartbeats, current jobs")
    command.add_argument("--all", action="store_true", help=f"also those silent for more than {format_age(3600)}")
    command.add_argument("--json", action="store_true")
    command.set_defaults(run=_workers)

    command = commands.add_parser("stats", help="jobs by status and type, the oldest waiting, the broker's queues")
    command.add_argument("--json", action="store_true")
    command.set_defaults(run=_stats)


def _workers(args: argparse.Namespace, settings: Settings) -> int:
    from db import queries

    connect(settings)
    rows, now, total = queries.workers(seen_within=None if args.all else RECENT)
    running = queries.active_jobs()
    for row in rows:
        row["state"] = _state(row, now)
        row["jobs"] = running.get(row["worker_id"], [])
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print("No workers." if not total else f"No worker seen in the last {format_age(RECENT.total_seconds())}.")
    else:
        columns = (
            Column("HOST", flexible=True),
            Column("PID", right=True),
            Column("STATE"),
            Column("STARTED"),
            Column("HEARTBEAT"),
            Column("LEASE"),
            Column("STOPPED"),
            Column("JOBS", right=True),
        )
        cells = [
            [
                row["hostname"],
                str(row["pid"]),
                row["state"],
                format_time(row["started_at"]),
                _ago(now - row["heartbeat_at"]),
                _lease(row, now),
                _ago(now - row["stopped_at"]) if row["stopped_at"] else "-",
                str(len(row["jobs"])),
            ]
            for row in rows
        ]
        notes = [("running " + " ".join(job[:8] for job in row["jobs"])) if row["jobs"] else "" for row in rows]
        print("\n".join(table(columns, cells, width=terminal_width(), notes=notes)))
    if total > len(rows):
        print(f"({total - len(rows)} older worker processes not shown: --all)")
    return 0


def _state(row: dict, now: datetime) -> str:
    """stopped (it said so), live (its lease runs), or lost (its lease ran out while it ran)."""
    if row["stopped_at"] is not None:
        return "stopped"
    return "live" if row["lease_expires_at"] > now else "lost"


def _ago(delta: timedelta) -> str:
    return f"{format_age(delta.total_seconds())} ago"


def _lease(row: dict, now: datetime) -> str:
    left = (row["lease_expires_at"] - now).total_seconds()
    return f"{format_age(left)} left" if left > 0 else "over"


def _stats(args: argparse.Namespace, settings: Settings) -> int:
    import redis

    from actors import JOB_TYPES  # their queues, whether or not a job was ever sent to them
    from db import queries

    connect(settings)
    rows, now = queries.job_counts()
    oldest = queries.oldest_waiting_job()
    if oldest is not None:
        oldest["age_s"] = max(0.0, (now - oldest["due_since"]).total_seconds())
    by_type, queues, not_due = _tally(rows, {actor.queue_name for actor in JOB_TYPES.values()})
    try:
        depths: dict[str, Depth] | None = broker_depth(settings, sorted(queues))
        broker_error = None
    except redis.RedisError as error:
        # The database's half is still worth printing: say why this column is empty.
        depths, broker_error = None, f"unreachable at {mask_url(settings.redis_url)}: {error}"
    if args.json:
        for name, rows_of in queues.items():
            rows_of["broker"] = depths and {**asdict(depths[name]), "total": depths[name].total}
        listed = [{"queue": name, **rows_of} for name, rows_of in sorted(queues.items())]
        print_json(
            {
                "jobs": by_type,
                "oldest_waiting": oldest,
                "not_due": not_due,
                "queues": listed,
                "broker_error": broker_error,
            }
        )
        return 0
    width = terminal_width()
    lines = [*_counts_table(by_type, width), ""]
    if oldest is None:
        lines.append("No job is waiting.")
    else:
        lines.append(
            f"oldest waiting job: {oldest['job_id'][:8]} ({oldest['job_type']}, {oldest['status']}),"
            f" waiting {format_age(oldest['age_s'])}"
        )
        lines.append(f"  (due since {format_time(oldest['due_since'])})")
    if not_due:
        lines.append(f"not due yet (a delay, a retry's backoff): {not_due}")
    columns = (Column("QUEUE", flexible=True), Column("WAITING", right=True), Column("ACTIVE", right=True))
    columns += (Column("IN REDIS"),)
    cells = [
        [name, str(rows_of["waiting"]), str(rows_of["active"]), _depth_text(depths, name)]
        for name, rows_of in sorted(queues.items())
    ]
    lines += ["", *table(columns, cells, width=width)]
    lines.append("(WAITING, ACTIVE: rows in the database; IN REDIS: messages the broker holds)")
    if broker_error:
        lines.append(f"broker {broker_error}")
    # Types and queues are stored text too (a row needn't have come from a send).
    print("\n".join(printable(line) for line in lines))
    return 0


def _tally(
    rows: list[dict], known_queues: set[str]
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]], int]:
    """Counts by type and status; waiting and active rows by queue; waiting rows not due yet."""
    by_type: dict[str, dict[str, int]] = {}
    queues: dict[str, dict[str, int]] = {name: {"waiting": 0, "active": 0} for name in known_queues}
    not_due = 0
    for row in rows:
        counts = by_type.setdefault(row["job_type"], dict.fromkeys(STATUSES, 0))
        counts[row["status"]] += row["jobs"]
        queue = queues.setdefault(row["queue"], {"waiting": 0, "active": 0})
        if row["status"] in ("pending", "retrying"):
            queue["waiting"] += row["jobs"]
            not_due += row["not_due"]
        elif row["status"] == "active":
            queue["active"] += row["jobs"]
    return by_type, queues, not_due


def _depth_text(depths: dict[str, Depth] | None, queue: str) -> str:
    if depths is None:
        return "unreachable"
    depth = depths[queue]
    return f"{depth.total} ({depth.queued} queued, {depth.delayed} delayed, {depth.unacked} unacked)"


def _counts_table(by_type: dict[str, dict[str, int]], width: int) -> list[str]:
    if not by_type:
        return ["No jobs."]
    columns = (Column("TYPE", flexible=True), *(Column(status.upper(), right=True) for status in STATUSES))
    columns += (Column("TOTAL", right=True),)
    totals = dict.fromkeys(STATUSES, 0)
    cells = []
    for job_type, counts in sorted(by_type.items()):
        cells.append([job_type, *(str(counts[s]) for s in STATUSES), str(sum(counts.values()))])
        for status in STATUSES:
            totals[status] += counts[status]
    cells.append(["all", *(str(totals[s]) for s in STATUSES), str(sum(totals.values()))])
    return table(columns, cells, width=width)
