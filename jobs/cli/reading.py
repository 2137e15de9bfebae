"""Reading jobs: show one (and follow it while it runs), list many (and watch the list).

Everything here reads PostgreSQL only, never Redis. Following and watching look again every
`--interval` seconds with indexed reads: the job's row by its key and its events after the last
one seen (job_events_job_idx); the list's one page.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from datetime import datetime, timezone
from typing import Any

from middleware.settings import Settings

from ..errors import JobNotFound
from .common import (
    UsageError,
    clip,
    connect,
    find_user,
    format_time,
    in_scope,
    one_line,
    print_json,
    printable,
    public_queue,
    resolve_job_id,
    resolve_organization,
    resolve_user,
    since_moment,
    terminal_width,
    user_emails,
)
from .table import Column, table

TERMINAL = ("completed", "failed", "cancelled")
WAITING = ("pending", "retrying")
AS_HELP = "user id or email: see only what that user may see (default: every tenant)"
LIST_COLUMNS = (
    Column("JOB"),
    Column("OWNER", flexible=True),
    Column("TYPE", flexible=True),
    Column("STATUS"),
    Column("TRY", right=True),
    Column("PROG", right=True),
    Column("CREATED / DUE"),
)
# The error of a job is printed under its row, from the owner's column on.
ERROR_INDENT = 9


def register(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser("show", help="a job's status and history (--follow: until it ends)")
    command.add_argument("job_id", metavar="JOB", help="the job's id, or its first 8 hex digits (or more)")
    command.add_argument("--as", dest="viewer", help=AS_HELP)
    command.add_argument(
        "--follow", action="store_true", help="then print its new events as they happen, until it ends"
    )
    command.add_argument("--interval", type=float, default=1.0, help="seconds between two looks (--follow; default 1)")
    command.add_argument("--json", action="store_true", help="as JSON (with --follow: one object a line)")
    command.set_defaults(run=_show)

    command = commands.add_parser("list", help="jobs, newest first (--watch: redrawn until interrupted)")
    command.add_argument("--as", dest="viewer", help=AS_HELP)
    command.add_argument("--status")
    command.add_argument("--type", help="job type")
    command.add_argument("--user", help="user email or id")
    command.add_argument("--org", help="organization name or id")
    command.add_argument("--since", help="created since: a duration back from now (10m, 2h, 3d) or an ISO time")
    page = command.add_mutually_exclusive_group()
    page.add_argument("--before", metavar="CURSOR", help="the jobs older than this cursor's (the next page)")
    page.add_argument("--after", metavar="CURSOR", help="the jobs newer than this cursor's")
    command.add_argument("--limit", type=int, default=50, help="jobs per page (default 50)")
    command.add_argument("--json", action="store_true", help="the full rows, and the cursor of the next page")
    command.add_argument("--watch", action="store_true", help="redraw the list until interrupted")
    command.add_argument("--interval", type=float, default=2.0, help="seconds between two redraws (--watch; default 2)")
    command.set_defaults(run=_list)


class _People:
    """Users' emails and organizations' names, as the viewer may see them; each looked up once."""

    def __init__(self, viewer: str | None) -> None:
        self.viewer = viewer
        self.emails: dict[str, str | None] = {}

    def learn(self, user_ids: list[Any]) -> None:
        missing = list({str(user) for user in user_ids if user is not None} - self.emails.keys())
        if missing:
            found = user_emails(missing, self.viewer)
            self.emails.update({user: found.get(user) for user in missing})

    def email(self, user_id: Any) -> str | None:
        return None if user_id is None else self.emails.get(str(user_id))

    def user(self, user_id: Any) -> str:
        """The user's email, or their id when it is not known."""
        return self.email(user_id) or str(user_id)


def _check(args: argparse.Namespace) -> None:
    if not args.interval > 0:
        raise UsageError(f"--interval must be a number of seconds above 0, not {args.interval}")


def _read(job_id: str, viewer: str | None, after_event: int | None = None) -> tuple[dict, list[dict]]:
    """The job's row, then its events (after `after_event`): the row first, so that the events
    include the one that gave it its status."""
    from db import queries

    from .. import service

    if viewer is not None:
        return service.show_job(job_id, as_user=viewer, after_event=after_event)
    job = queries.get_job(job_id)
    if job is None:
        raise JobNotFound(job_id)
    return job, queries.job_events(job_id, after_id=after_event)


def _show(args: argparse.Namespace, settings: Settings) -> int:
    _check(args)
    connect(settings)
    viewer = resolve_user(args.viewer) if args.viewer else None
    job_id = resolve_job_id(args.job_id, viewer)
    try:
        job, events = _read(job_id, viewer)
    except JobNotFound:
        raise JobNotFound(args.job_id) from None
    people = _People(viewer)
    people.learn(_user_ids(job, events))
    if args.json:
        document = {"job": _job_json(job, people), "events": [_event_json(event, people) for event in events]}
        if args.follow:
            print(json.dumps(document, default=str), flush=True)
        else:
            print_json(document)
    else:
        print("\n".join(_show_lines(job, events, people, operator=viewer is None)), flush=True)
    if args.follow:
        _follow(job, events, viewer, people, args)
    return 0


def _follow(job: dict, events: list[dict], viewer: str | None, people: _People, args: argparse.Namespace) -> None:
    """Prints the job's new events (and its progress) until it ends."""
    last = events[-1]["id"] if events else None
    progress = (job["progress"], job["progress_message"])
    while job["status"] not in TERMINAL:
        time.sleep(args.interval)
        job, new = _read(str(job["job_id"]), viewer, after_event=last)
        people.learn(_user_ids(job, new))
        for event in new:
            last = event["id"]
            if args.json:
                print(json.dumps(_event_json(event, people), default=str))
            else:
                print(_event_line(event, people, operator=viewer is None))
        if (job["progress"], job["progress_message"]) != progress and job["status"] == "active":
            if args.json:
                update = {"progress": job["progress"], "progress_message": job["progress_message"]}
                print(json.dumps({**update, "at": job["updated_at"]}, default=str))
            else:
                print(_progress_line(job))
        progress = (job["progress"], job["progress_message"])
        sys.stdout.flush()


def _user_ids(job: dict, events: list[dict]) -> list[Any]:
    return [job["user_id"], job["cancelled_by"], *(event["actor_user_id"] for event in events)]


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _job_json(job: dict, people: _People) -> dict:
    return {
        **job,
        "queue": public_queue(job["queue"]),
        "user_email": people.email(job["user_id"]),
        "cancelled_by_email": people.email(job["cancelled_by"]),
    }


def _event_json(event: dict, people: _People) -> dict:
    return {**event, "actor_email": people.email(event["actor_user_id"])}


def _show_lines(job: dict, events: list[dict], people: _People, *, operator: bool) -> list[str]:
    from db import queries

    organization = in_scope(people.viewer, lambda: queries.organization_names([job["organization_id"]]))
    error = _error(job)
    arguments = job["kwargs"] if not job["args"] else {"args": job["args"], "kwargs": job["kwargs"]}
    cancelled = None
    if job["cancelled_at"] is not None:
        by = f" by {people.user(job['cancelled_by'])}" if job["cancelled_by"] else ""
        cancelled = format_time(job["cancelled_at"]) + by
    fields = [
        ("job", str(job["job_id"])),
        ("type", job["job_type"]),
        ("status", f"{job['status']}, attempt {job['attempts']} of {job['max_attempts']}"),
        ("owner", people.user(job["user_id"])),
        ("organization", organization.get(str(job["organization_id"]), str(job["organization_id"]))),
        ("course", job["course_id"] and str(job["course_id"])),
        ("progress", f"{job['progress']}%  {one_line(job['progress_message'])}".rstrip()),
        ("arguments", _json_text(arguments)),
        ("result", None if job["result"] is None else _json_text(job["result"])),
        ("error", error or None),
        ("created", format_time(job["created_at"])),
        ("due", format_time(job["scheduled_for"]) if job["status"] in WAITING and job["scheduled_for"] else None),
        ("started", job["started_at"] and format_time(job["started_at"])),
        ("completed", job["completed_at"] and format_time(job["completed_at"])),
        ("failed", job["failed_at"] and format_time(job["failed_at"])),
        ("cancelled", cancelled),
        ("reason", job["cancel_reason"] and one_line(job["cancel_reason"])),
        ("updated", format_time(job["updated_at"])),
        ("worker", job["worker_id"] if operator else None),
        ("lost deliveries", str(job["lost_deliveries"]) if job["lost_deliveries"] else None),
        ("options", _json_text(job["options"]) if job["options"] else None),
    ]
    lines = [f"{name:>15}  {value}" for name, value in fields if value]
    if operator and job["error_stack"]:
        lines += ["", "error stack:", *(f"  {printable(line)}" for line in job["error_stack"].rstrip().splitlines())]
    lines += ["", "history:", *(_event_line(event, people, operator=operator) for event in events)]
    return lines


def _event_line(event: dict, people: _People, *, operator: bool) -> str:
    change = f"{event['from_status'] or ''} -> {event['to_status']}".lstrip() if event["to_status"] else ""
    notes = [f"by {people.user(event['actor_user_id'])}"] if event["actor_user_id"] else []
    if operator and event["worker_id"]:
        notes.append(f"on {event['worker_id']}")
    for key, value in event["details"].items():
        notes.append(f"{key}={one_line(value) if isinstance(value, str) else _json_text(value)}")
    return (
        f"  {format_time(event['created_at'])}  {event['event']:<19} {change:<21} attempt {event['attempt']}"
        f"  {' '.join(notes)}"
    ).rstrip()


def _progress_line(job: dict) -> str:
    return (
        f"  {format_time(job['updated_at'])}  {'progress':<19} {job['progress']}%  {one_line(job['progress_message'])}"
    )


def _error(job: dict) -> str:
    """The first line of the job's error, with its type."""
    message = one_line(job["error_message"])
    if job["error_type"]:
        return f"{job['error_type']}: {message}" if message else job["error_type"]
    return message


def _list(args: argparse.Namespace, settings: Settings) -> int:
    _check(args)
    if args.watch and args.json:
        raise UsageError("--watch redraws a table: it does not go with --json")
    connect(settings)
    viewer = resolve_user(args.viewer) if args.viewer else None
    filters = _filters(args, viewer)
    people = _People(viewer)
    if args.watch:
        _watch(args, filters, viewer, people)
    rows, cursor = _page(filters, viewer, args)
    people.learn([user for row in rows for user in (row["user_id"], row["cancelled_by"])])
    if args.json:
        print_json({"jobs": [_job_json(row, people) for row in rows], "next": cursor})
    else:
        print("\n".join(_list_lines(rows, people, cursor, args, terminal_width())))
    return 0


def _filters(args: argparse.Namespace, viewer: str | None) -> dict[str, Any]:
    """The filters of the list, with the user and the organization found as the viewer sees
    them: one that names nothing is an error, not an empty list."""
    filters: dict[str, Any] = {"status": args.status, "job_type": args.type}
    if args.since:
        filters["since"] = since_moment(args.since)
    if args.user:
        user = find_user(args.user, viewer)
        filters["user_id"] = str(user["id"])
        # Naming the user's organization too lets the planner walk (organization, user, created).
        filters["organization_id"] = str(user["organization"])
    if args.org:
        # If the user is of another organization, the two filters together match nothing.
        filters["organization_id"] = resolve_organization(args.org, viewer)
    return filters


def _fetch(filters: dict[str, Any], viewer: str | None, **page: Any) -> list[dict]:
    from db import queries

    from .. import service

    if viewer is not None:
        return service.list_jobs(as_user=viewer, **filters, **page)
    return queries.list_jobs(**filters, **page)


def _newer(args: argparse.Namespace) -> bool:
    """Whether the pages go towards newer jobs (--after), or older ones."""
    return args.after is not None


def _page(filters: dict[str, Any], viewer: str | None, args: argparse.Namespace) -> tuple[list[dict], str | None]:
    """One page of the list, and the cursor of the next one (in the same direction) if there is
    one: when the page is full, one more indexed read says whether anything lies beyond it."""
    from db import queries

    rows = _fetch(filters, viewer, before=args.before, after=args.after, limit=args.limit)
    if len(rows) < args.limit:
        return rows, None
    cursor = queries.job_cursor(rows[0] if _newer(args) else rows[-1])
    beyond = {"after": cursor} if _newer(args) else {"before": cursor}
    return rows, cursor if _fetch(filters, viewer, **beyond, limit=1) else None


def _when(job: dict) -> str:
    due = job["scheduled_for"]
    if job["status"] in WAITING and due is not None and due > job["created_at"]:
        return "due " + format_time(due)
    return format_time(job["created_at"])


def _list_lines(
    rows: list[dict], people: _People, cursor: str | None, args: argparse.Namespace, width: int
) -> list[str]:
    if not rows:
        return ["No jobs."]
    cells = [
        [
            str(job["job_id"])[:8],
            people.user(job["user_id"]),
            job["job_type"],
            job["status"],
            f"{job['attempts']}/{job['max_attempts']}",
            f"{job['progress']}%",
            _when(job),
        ]
        for job in rows
    ]
    lines = table(LIST_COLUMNS, cells, width=width, notes=[_error(job) for job in rows], indent=ERROR_INDENT)
    if cursor:
        # Not cut to the width: it is a command to copy (78 characters at most).
        option = "--after" if _newer(args) else "--before"
        lines.append(f"{len(rows)} shown, more remain: repeat with {option} {cursor}")
    return lines


def _watch(args: argparse.Namespace, filters: dict[str, Any], viewer: str | None, people: _People) -> None:
    """Redraws the list every interval until interrupted (Ctrl-C: exit code 130). On a terminal
    each frame is drawn over the last, cut to the window's height; elsewhere frames follow one
    another, a blank line between them."""
    out = sys.stdout
    terminal = out.isatty()
    if terminal:
        out.write("\x1b[?25l\x1b[2J")  # hide the cursor, clear the screen
    try:
        while True:
            rows, cursor = _page(filters, viewer, args)
            people.learn([row["user_id"] for row in rows])
            size = shutil.get_terminal_size((80, 24))
            width = terminal_width()
            now = format_time(datetime.now(timezone.utc))
            title = clip(f"jobctl list: every {args.interval:g}s, at {now} (Ctrl-C to stop)", width)
            lines = [title, "", *_list_lines(rows, people, cursor, args, width)]
            if terminal:
                out.write("\x1b[H" + "".join(f"{line}\x1b[K\n" for line in lines[: size.lines - 1]) + "\x1b[J")
            else:
                out.write("\n".join(lines) + "\n\n")
            out.flush()
            time.sleep(args.interval)
    finally:
        if terminal:
            out.write("\x1b[?25h")
            out.flush()
