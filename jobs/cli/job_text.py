"""How a job, its history and a list of jobs are printed: what `show`, `show --follow`, `list`
and `list --watch` share."""

from __future__ import annotations

import json
from typing import Any

from .common import format_time, in_scope, one_line, printable, public_queue, user_emails
from .table import Column, table

WAITING = ("pending", "retrying")
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


class People:
    """Users' emails, as the viewer may see them; each looked up once."""

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


def user_ids(job: dict, events: list[dict]) -> list[Any]:
    """The users a job and its events name: its owner, who cancelled it, who acted."""
    return [job["user_id"], job["cancelled_by"], *(event["actor_user_id"] for event in events)]


def json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def job_json(job: dict, people: People) -> dict:
    """The row as `--json` prints it: as the viewer may read it (a tenant's without the
    operators' fields: jobs.reads.for_tenant), with the users' emails and the public queue name."""
    return {
        **job,
        "queue": public_queue(job["queue"]),
        "user_email": people.email(job["user_id"]),
        "cancelled_by_email": people.email(job["cancelled_by"]),
    }


def event_json(event: dict, people: People) -> dict:
    return {**event, "actor_email": people.email(event["actor_user_id"])}


def show_lines(job: dict, events: list[dict], people: People) -> list[str]:
    """`show`: the job's fields, then its history, every line printable. The error's stack and
    the workers' names are printed when the row has them: an operator's does, a tenant's not
    (jobs.reads.for_tenant)."""
    from db import queries

    organization = in_scope(people.viewer, lambda: queries.organization_names([job["organization_id"]]))
    retry = in_scope(people.viewer, lambda: queries.retried_as(job["job_id"]))
    error = error_line(job)
    arguments = job["kwargs"] if not job["args"] else {"args": job["args"], "kwargs": job["kwargs"]}
    cancelled = None
    if job["cancelled_at"] is not None:
        by = f" by {people.user(job['cancelled_by'])}" if job["cancelled_by"] else ""
        operator_name = next((e["details"].get("operator") for e in events if e["event"] == "cancelled"), None)
        if operator_name:
            by = f" by operator {operator_name}"
        cancelled = format_time(job["cancelled_at"]) + by
    fields = [
        ("job", str(job["job_id"])),
        ("type", job["job_type"]),
        ("status", f"{job['status']}, attempt {job['attempts']} of {job['max_attempts']}"),
        ("owner", people.user(job["user_id"])),
        ("organization", organization.get(str(job["organization_id"]), str(job["organization_id"]))),
        ("course", job["course_id"] and str(job["course_id"])),
        ("key", job["idempotency_key"]),
        ("retry of", job["retry_of"] and str(job["retry_of"])),
        ("retried as", retry),
        ("progress", f"{job['progress']}%  {job['progress_message'] or ''}".rstrip()),
        ("arguments", json_text(arguments)),
        ("result", None if job["result"] is None else json_text(job["result"])),
        ("error", error or None),
        ("created", format_time(job["created_at"])),
        ("due", format_time(job["scheduled_for"]) if job["status"] in WAITING and job["scheduled_for"] else None),
        ("started", job["started_at"] and format_time(job["started_at"])),
        ("completed", job["completed_at"] and format_time(job["completed_at"])),
        ("failed", job["failed_at"] and format_time(job["failed_at"])),
        ("cancelled", cancelled),
        ("reason", job["cancel_reason"]),
        ("updated", format_time(job["updated_at"])),
        ("worker", job.get("worker_id")),
        ("lost deliveries", str(job["lost_deliveries"]) if job["lost_deliveries"] else None),
        ("options", json_text(job["options"]) if job["options"] else None),
    ]
    lines = [f"{name:>15}  {printable(str(value))}" for name, value in fields if value]
    if job.get("error_stack"):
        lines += ["", "error stack:", *(f"  {printable(line)}" for line in job["error_stack"].rstrip().split("\n"))]
    lines += ["", "history:", *(event_line(event, people) for event in events)]
    return lines


def event_line(event: dict, people: People) -> str:
    """A line of the history, printable (its details are stored text)."""
    change = f"{event['from_status'] or ''} -> {event['to_status']}".lstrip() if event["to_status"] else ""
    notes = [f"by {people.user(event['actor_user_id'])}"] if event["actor_user_id"] else []
    if event.get("worker_id"):
        notes.append(f"on {event['worker_id']}")
    for key, value in event["details"].items():
        notes.append(f"{key}={value if isinstance(value, str) else json_text(value)}")
    return printable(
        f"  {format_time(event['created_at'])}  {event['event']:<19} {change:<21} attempt {event['attempt']}"
        f"  {' '.join(notes)}"
    ).rstrip()


def progress_line(job: dict) -> str:
    return printable(
        f"  {format_time(job['updated_at'])}  {'progress':<19} {job['progress']}%  {job['progress_message'] or ''}"
    )


def error_line(job: dict) -> str:
    """The first line of the job's error, with its type."""
    message = one_line(job["error_message"])
    if job["error_type"]:
        return f"{job['error_type']}: {message}" if message else job["error_type"]
    return message


def when(job: dict) -> str:
    due = job["scheduled_for"]
    if job["status"] in WAITING and due is not None and due > job["created_at"]:
        return "due " + format_time(due)
    return format_time(job["created_at"])


def list_lines(rows: list[dict], people: People, width: int) -> list[str]:
    """The table of `list`: a header, a line per job and its error's first line under it."""
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
            when(job),
        ]
        for job in rows
    ]
    return table(LIST_COLUMNS, cells, width=width, notes=[error_line(job) for job in rows], indent=ERROR_INDENT)
