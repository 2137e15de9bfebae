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

from ..errors import JobNotFound, UnknownJobType
from . import job_text
from .common import (
    UsageError,
    clip,
    connect,
    find_user,
    format_time,
    print_json,
    resolve_job_id,
    resolve_organization,
    resolve_user,
    since_moment,
    terminal_width,
)

TERMINAL = ("completed", "failed", "cancelled")
AS_HELP = "user id or email: see only what that user may see"
OPERATOR_HELP = "see every tenant, whole (stacks, workers): the operators' view, asked for by name"


def _audience(command: argparse.ArgumentParser) -> None:
    """--as USER or --operator, one of them: the operators' view is never the default, so that an
    empty variable in a script (`--as "$USER_EMAIL"`) can't reach every tenant."""
    who = command.add_mutually_exclusive_group(required=True)
    who.add_argument("--as", dest="viewer", help=AS_HELP)
    who.add_argument("--operator", action="store_true", help=OPERATOR_HELP)


def register(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser("show", help="a job's status and history (--follow: until it ends)")
    command.add_argument("job_id", metavar="JOB", help="the job's id, or its first 8 hex digits (or more)")
    _audience(command)
    command.add_argument(
        "--follow", action="store_true", help="then print its new events as they happen, until it ends"
    )
    command.add_argument("--interval", type=float, default=1.0, help="seconds between two looks (--follow; default 1)")
    command.add_argument("--json", action="store_true", help="as JSON (with --follow: one object a line)")
    command.set_defaults(run=_show)

    command = commands.add_parser("list", help="jobs, newest first (--watch: redrawn until interrupted)")
    _audience(command)
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


def _check(args: argparse.Namespace) -> None:
    if not args.interval > 0:
        raise UsageError(f"--interval must be a number of seconds above 0, not {args.interval}")


def _viewer(args: argparse.Namespace) -> str | None:
    """The id of the user whose view is printed; None for the operators' view (--operator)."""
    return None if args.operator else resolve_user(args.viewer)


def _read(job_id: str, viewer: str | None, after_event: int | None = None) -> tuple[dict, list[dict]]:
    """The job's row, then its events (after `after_event`): the row first, so that the events
    include the one that gave it its status. A user's as jobs.reads shapes them for a tenant; the
    operator's whole."""
    from db import queries

    from .. import reads

    if viewer is not None:
        return reads.show_job(job_id, as_user=viewer, after_event=after_event)
    job = queries.get_job(job_id)
    if job is None:
        raise JobNotFound(job_id)
    return job, queries.job_events(job_id, after_id=after_event)


def _show(args: argparse.Namespace, settings: Settings) -> int:
    _check(args)
    connect(settings)
    viewer = _viewer(args)
    job_id = resolve_job_id(args.job_id, viewer)
    try:
        job, events = _read(job_id, viewer)
    except JobNotFound:
        raise JobNotFound(args.job_id) from None
    people = job_text.People(viewer)
    people.learn(job_text.user_ids(job, events))
    if args.json:
        document = {
            "job": job_text.job_json(job, people),
            "events": [job_text.event_json(event, people) for event in events],
        }
        if args.follow:
            print(json.dumps(document, default=str), flush=True)
        else:
            print_json(document)
    else:
        print("\n".join(job_text.show_lines(job, events, people)), flush=True)
    if args.follow:
        _follow(job, events, viewer, people, args)
    return 0


def _follow(
    job: dict, events: list[dict], viewer: str | None, people: job_text.People, args: argparse.Namespace
) -> None:
    """Prints the job's new events (and its progress) until it ends."""
    last = events[-1]["id"] if events else None
    progress = (job["progress"], job["progress_message"])
    while job["status"] not in TERMINAL:
        time.sleep(args.interval)
        job, new = _read(str(job["job_id"]), viewer, after_event=last)
        people.learn(job_text.user_ids(job, new))
        for event in new:
            last = event["id"]
            if args.json:
                print(json.dumps(job_text.event_json(event, people), default=str))
            else:
                print(job_text.event_line(event, people))
        if (job["progress"], job["progress_message"]) != progress and job["status"] == "active":
            if args.json:
                update = {"progress": job["progress"], "progress_message": job["progress_message"]}
                print(json.dumps({**update, "at": job["updated_at"]}, default=str))
            else:
                print(job_text.progress_line(job))
        progress = (job["progress"], job["progress_message"])
        sys.stdout.flush()


def _list(args: argparse.Namespace, settings: Settings) -> int:
    _check(args)
    if args.watch and args.json:
        raise UsageError("--watch redraws a table: it does not go with --json")
    connect(settings)
    viewer = _viewer(args)
    filters = _filters(args, viewer)
    people = job_text.People(viewer)
    if args.watch:
        _watch(args, filters, viewer, people)
    rows, cursor = _page(filters, viewer, args)
    people.learn([user for row in rows for user in (row["user_id"], row["cancelled_by"])])
    if args.json:
        print_json({"jobs": [job_text.job_json(row, people) for row in rows], "next": cursor})
    else:
        print("\n".join(_list_lines(rows, people, cursor, args, terminal_width())))
    return 0


def _filters(args: argparse.Namespace, viewer: str | None) -> dict[str, Any]:
    """The filters of the list, with the user and the organization found as the viewer sees
    them: one that names nothing is an error, not an empty list."""
    if args.type is not None:
        from actors import JOB_TYPES

        if args.type not in JOB_TYPES:
            raise UnknownJobType(args.type, list(JOB_TYPES))
    filters: dict[str, Any] = {"status": args.status, "job_type": args.type}
    if args.since:
        filters["since"] = since_moment(args.since)
    if args.user:
        user = find_user(args.user, viewer, option="--user")
        filters["user_id"] = str(user["id"])
        # Naming the user's organization too lets the planner walk (organization, user, created).
        filters["organization_id"] = str(user["organization"])
    if args.org:
        # If the user is of another organization, the two filters together match nothing.
        filters["organization_id"] = resolve_organization(args.org, viewer)
    return filters


def _page(filters: dict[str, Any], viewer: str | None, args: argparse.Namespace) -> tuple[list[dict], str | None]:
    """One page of the list, and the cursor of the next one (in the same direction) if there is
    one: as the viewer sees them (jobs.reads), or the operators' whole."""
    from db import queries

    from .. import reads

    page = {"before": args.before, "after": args.after, "limit": args.limit}
    if viewer is not None:
        return reads.list_page(as_user=viewer, **filters, **page)
    return queries.list_page(**filters, **page)


def _list_lines(
    rows: list[dict], people: job_text.People, cursor: str | None, args: argparse.Namespace, width: int
) -> list[str]:
    """The table, and how to see more when the limit cut it."""
    lines = job_text.list_lines(rows, people, width)
    if cursor:
        # Not cut to the width: it is a command to copy (78 characters at most).
        option = "--after" if args.after is not None else "--before"
        lines.append(f"{len(rows)} shown, more remain: repeat with {option} {cursor}")
    return lines


def _watch(args: argparse.Namespace, filters: dict[str, Any], viewer: str | None, people: job_text.People) -> None:
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
