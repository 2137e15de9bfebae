"""A job's events as its page's timeline shows them: who acted, and what the event's details
say, in words. The events are already shaped for the caller (a tenant's carry no worker)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from db.excerpt import clipped

#: A detail's value shown at most this long (a reason or a message is bounded where it is stored).
MAX_VALUE = 300
#: Events that a worker process writes about its own execution (the others: a user, an operator, a
#: reaper's recovery or a send).
WORKER_EVENTS = frozenset(
    {"started", "completed", "failed", "retrying", "execution_stopped", "lease_expired", "delivery_skipped"}
)


@dataclass(frozen=True)
class Detail:
    """One thing an event's details say; `job_id` when it names a job (a link)."""

    label: str
    text: str
    job_id: str | None = None


def who(event: dict[str, Any], emails: dict[str, str]) -> str:
    """Who acted: a user (by email), an operator (by name), the worker that ran the job, or the
    system (a reaper's recovery, a refused write)."""
    actor = event.get("actor_user_id")
    if actor is not None:
        return emails.get(str(actor), f"user {str(actor)[:8]}")
    details = event.get("details") or {}
    if isinstance(details, dict) and details.get("operator"):
        return f"operator {details['operator']}"
    name = event.get("event")
    recovered = name == "worker_lost" or (name == "failed" and details.get("error_type") == "WorkerLost")
    if not recovered and (event.get("worker_id") or name in WORKER_EVENTS):
        return "worker"
    return "system"


def details(event: dict[str, Any]) -> list[Detail]:
    """The event's details in words: the reason of a cancellation, why a request was refused, an
    error, a delay, the job a retry made; anything else as `name: value`."""
    raw = event.get("details") or {}
    if not isinstance(raw, dict):
        return [Detail("details", _text(raw))]
    said: list[Detail] = []
    rest = dict(raw)
    rest.pop("operator", None)  # said by `who`
    if "reason" in rest:
        said.append(Detail("reason", _text(rest.pop("reason"))))
    if "why" in rest:
        said.append(Detail("why", _text(rest.pop("why"))))
    if "error_type" in rest or "error_message" in rest:
        kind, message = rest.pop("error_type", None), rest.pop("error_message", None)
        said.append(Detail("error", ": ".join(_text(part) for part in (kind, message) if part is not None)))
    if "retry_job_id" in rest:
        job_id = str(rest.pop("retry_job_id"))
        said.append(Detail("retried as", job_id[:8], job_id))
    if "retry_of" in rest:
        job_id = str(rest.pop("retry_of"))
        said.append(Detail("retry of", job_id[:8], job_id))
    if "delay_ms" in rest:
        said.append(Detail("delay", f"{rest.pop('delay_ms')} ms"))
    for name, value in sorted(rest.items()):
        said.append(Detail(name.replace("_", " "), _text(value)))
    return said


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return clipped(text, MAX_VALUE)


def timeline(events: list[dict[str, Any]], emails: dict[str, str]) -> list[dict[str, Any]]:
    """The events, oldest first, each with `who` and `said` (its details in words)."""
    return [{**event, "who": who(event, emails), "said": details(event)} for event in events]
