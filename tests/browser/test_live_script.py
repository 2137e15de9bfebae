"""The pages' script against the streams' contract, message by message: a stream of known
messages (served by the browser itself, as one response) and the page's answer to each. The
server's own streams are followed in test_live.py; this holds the script to the contract's
shape (`event: job`, `event: event` with its `id:`, `event: end`) on its own."""

from __future__ import annotations

import json

from playwright.sync_api import Page, Route, expect

from tests.api.conftest import send

OTHER = "00000000-0000-4000-8000-000000000001"
#: EventSource waits this long before it connects again once the canned response has ended.
NO_RECONNECT = "retry: 3600000\n\n"


def serve_stream(page: Page, path: str, messages: list[tuple[str, dict, int | None]]) -> None:
    """Answers the page's EventSource at `path` with these (event, data, id) messages."""
    body = NO_RECONNECT + "".join(
        (f"id: {event_id}\n" if event_id is not None else "") + f"event: {name}\ndata: {json.dumps(data)}\n\n"
        for name, data, event_id in messages
    )

    def fulfill(route: Route) -> None:
        route.fulfill(status=200, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}, body=body)

    page.route(f"**{path}", fulfill)


def state(job_id: str, status: str, progress: int, message: str | None = None) -> dict:
    return {
        "job_id": job_id,
        "status": status,
        "progress": progress,
        "progress_message": message,
        "updated_at": "2026-11-29T12:00:00+00:00",
    }


def test_the_jobs_page_applies_each_message_to_its_row(signed_in, client_as, tenants):
    alice = tenants.acme.members[0]
    job_id = send(client_as(alice), delay_ms=600_000)
    started = {
        "id": 7,
        "job_id": job_id,
        "event": "started",
        "from_status": "pending",
        "to_status": "active",
        "attempt": 1,
        "actor_user_id": None,
        "details": {},
        "created_at": "2026-11-29T12:00:00+00:00",
    }
    page = signed_in(alice)
    serve_stream(
        page,
        "/api/stream",
        [
            ("job", state(job_id, "active", 0), None),
            ("event", started, 7),
            ("job", state(job_id, "active", 40, "halfway there"), None),
            ("event", {**started, "id": 8, "event": "cancelled", "from_status": "active", "to_status": "cancelled"}, 8),
            # A job this page doesn't show, sent since it opened.
            ("event", {**started, "id": 9, "job_id": OTHER, "event": "enqueued", "to_status": "pending"}, 9),
        ],
    )
    page.reload()
    job = page.locator(f'tr[data-job-id="{job_id}"]')
    expect(job.get_by_role("progressbar")).to_have_attribute("value", "40")
    expect(job.locator("[data-field=progress-text]")).to_have_text("40%")
    expect(job.locator("[data-field=attempt]")).to_have_text("1")
    expect(job.locator("[data-field=status]")).to_have_text("cancelled")
    expect(job.locator("[data-field=status]")).to_have_class("status status-cancelled")
    expect(page.get_by_role("status").filter(has_text="New jobs were sent")).to_be_visible()
    expect(page.locator(f'tr[data-job-id="{OTHER}"]')).to_have_count(0)


def test_a_jobs_page_applies_its_jobs_progress(signed_in, client_as, tenants):
    alice = tenants.acme.members[0]
    job_id = send(client_as(alice), delay_ms=600_000)
    page = signed_in(alice)
    serve_stream(page, f"/api/jobs/{job_id}/stream", [("job", state(job_id, "active", 25, "a quarter"), None)])
    page.goto(f"/jobs/{job_id}")
    summary = page.locator("#job-summary")
    expect(summary.get_by_role("progressbar")).to_have_attribute("value", "25")
    expect(summary.locator("[data-field=progress-message]")).to_have_text("a quarter")
    expect(summary.locator("[data-field=status]")).to_have_text("active")
