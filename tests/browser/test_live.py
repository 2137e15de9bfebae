"""The pages follow jobs live, without reloading, through the server's Server-Sent Events
(/api/stream, /api/jobs/{id}/stream): a real worker process runs a job whose progress the test
sets step by step (tests/support/stepped.py), so each expectation waits for one known state."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from actors.broker import bind
from tests.api.conftest import send
from tests.browser.test_pages import event_row
from tests.helpers import job_row, wait_for
from tests.support.stepped import finish, step, stepped_job

STEPPED = "tests.support.stepped"


@pytest.fixture
def stepped(workers, redis_broker):
    """`stepped(user_id)`: sends a stepped job in that user's name, run by a real worker process;
    its id, once it runs (its progress and its end are then the test's to give)."""
    bind(redis_broker, [stepped_job])
    workers(modules=(STEPPED,))

    def send_as(user_id: str) -> str:
        job_id = stepped_job.send_with_options(job_owner={"user_id": user_id}).message_id
        wait_for(lambda: job_row(job_id)["status"] == "active", what="the stepped job to start", timeout=30)
        return job_id

    return send_as


def not_reloaded(page: Page) -> None:
    """Marks the page's window; `still_the_same(page)` then says no navigation replaced it."""
    page.evaluate("window.notReloaded = true")


def still_the_same(page: Page) -> bool:
    return page.evaluate("window.notReloaded === true")


def test_a_member_watches_a_jobs_progress_and_completion_on_the_jobs_page(signed_in, stepped, tenants):
    alice = tenants.acme.members[0]
    job_id = stepped(alice)
    page = signed_in(alice)
    not_reloaded(page)
    job = page.locator(f'tr[data-job-id="{job_id}"]')
    expect(job.locator("[data-field=status]")).to_have_text("active")
    expect(job.get_by_role("progressbar")).to_have_attribute("value", "0")

    for percent in (30, 70):
        step(job_id, percent)
        expect(job.get_by_role("progressbar")).to_have_attribute("value", str(percent))
        expect(job.locator("[data-field=progress-text]")).to_have_text(f"{percent}%")
    finish(job_id)
    expect(job.locator("[data-field=status]")).to_have_text("completed")
    expect(job.locator("[data-field=status]")).to_have_class("status status-completed")
    assert still_the_same(page)


def test_a_jobs_page_follows_its_progress_events_and_end(signed_in, stepped, tenants):
    alice = tenants.acme.members[0]
    job_id = stepped(alice)
    page = signed_in(alice)
    page.goto(f"/jobs/{job_id}")
    not_reloaded(page)
    summary = page.locator("#job-summary")
    expect(summary.locator("[data-field=status]")).to_have_text("active")
    expect(page.get_by_role("button", name="Cancel job")).to_be_visible()

    step(job_id, 45)
    expect(summary.get_by_role("progressbar")).to_have_attribute("value", "45")
    expect(summary.locator("[data-field=progress-message]")).to_have_text("step 1: 45%")
    finish(job_id)
    expect(summary.locator("[data-field=status]")).to_have_text("completed")
    # The event's row joins the timeline; the job's end takes the Cancel button away and shows its result.
    expect(event_row(page, "completed")).to_have_count(1)
    expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)
    expect(page.get_by_text('"reported": [')).to_be_visible()
    assert still_the_same(page)


def test_a_cancellation_by_an_admin_reaches_the_members_open_page(signed_in, stepped, client_as, tenants):
    alice = tenants.acme.members[0]
    job_id = stepped(alice)
    page = signed_in(alice)
    page.goto(f"/jobs/{job_id}")
    not_reloaded(page)
    expect(page.locator("#job-summary [data-field=status]")).to_have_text("active")

    cancelled = client_as(tenants.acme.admin).post(f"/api/jobs/{job_id}/cancel", json={"reason": "not today"})
    assert cancelled.status_code == 200, cancelled.text
    expect(page.locator("#job-summary [data-field=status]")).to_have_text("cancelled")
    expect(event_row(page, "cancelled")).to_contain_text("not today")
    expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)
    expect(page.get_by_role("button", name="Retry job")).to_be_visible()  # the owner may retry it
    assert still_the_same(page)


def test_a_cancellation_shows_on_the_jobs_page(signed_in, client_as, tenants):
    alice = tenants.acme.members[0]
    job_id = send(client_as(alice), delay_ms=600_000)
    page = signed_in(alice)
    not_reloaded(page)
    status = page.locator(f'tr[data-job-id="{job_id}"] [data-field=status]')
    expect(status).to_have_text("pending")
    assert client_as(tenants.acme.admin).post(f"/api/jobs/{job_id}/cancel").status_code == 200
    expect(status).to_have_text("cancelled")
    assert still_the_same(page)


def test_a_job_sent_after_the_jobs_page_opened_is_announced(signed_in, client_as, tenants):
    alice = tenants.acme.members[0]
    page = signed_in(alice)
    not_reloaded(page)
    notice = page.get_by_role("status").filter(has_text="New jobs were sent")
    expect(notice).to_be_hidden()
    job_id = send(client_as(alice), delay_ms=600_000)
    expect(notice).to_be_visible()
    notice.get_by_role("link", name="Show them").click()
    expect(page.locator(f'tr[data-job-id="{job_id}"]')).to_be_visible()
