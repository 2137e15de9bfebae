"""The pages in a real browser, for each audience: signing in, who sees which jobs, a job's page,
its Cancel and Retry buttons and what they do, the workers page, errors as pages, keyboard use
and a narrow window. Jobs that must run are run by real worker processes."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from db.fixtures import seed  # noqa: F401 - the tenants come from tests/conftest.py
from tests.api.conftest import OPERATOR, send
from tests.helpers import events, job_row, wait_for


def row(page: Page, job_id: str):
    return page.locator(f'tr[data-job-id="{job_id}"]')


def event_row(page: Page, event: str):
    """The timeline's rows of this event (by the event's name, not by a status it mentions)."""
    return page.locator("#job-timeline tbody tr").filter(has=page.get_by_role("rowheader", name=event, exact=True))


def emails(tenants) -> dict[str, str]:
    from db.connection import database

    return dict(database.execute_sql("SELECT id::text, email FROM users").fetchall())


def test_without_a_session_the_pages_explain_how_to_sign_in(anonymous):
    response = anonymous.goto("/")
    assert response.status == 401
    expect(anonymous.get_by_role("heading", name="Sign in to see your jobs")).to_be_visible()
    expect(anonymous.get_by_text("jobctl token --as you@example.com --login-url")).to_be_visible()


def test_a_login_link_followed_from_another_site_signs_the_browser_in(anonymous, server, tenants):
    from tests.api.conftest import user_token

    link = f"{server.url}/login?token={user_token(tenants.acme.members[0])}"
    # A page of another site (served by the browser itself) whose link a person clicks: a
    # SameSite=Strict cookie set behind a redirect that began there would not be sent.
    anonymous.route(
        "https://chat.example/**",
        lambda route: route.fulfill(content_type="text/html", body=f'<a href="{link}">open the dashboard</a>'),
    )
    anonymous.goto("https://chat.example/room")
    anonymous.get_by_role("link", name="open the dashboard").click()
    expect(anonymous.get_by_role("heading", name="Jobs", level=1)).to_be_visible()
    expect(anonymous).to_have_url(f"{server.url}/")
    expect(anonymous.get_by_text("Your jobs.")).to_be_visible()


def test_a_member_sees_and_opens_only_their_own_jobs(signed_in, client_as, tenants):
    alice, bob = tenants.acme.members
    mine = send(client_as(alice), args={"delay_ms": 5}, delay_ms=600_000)
    theirs = send(client_as(bob), args={"delay_ms": 5}, delay_ms=600_000)

    page = signed_in(alice)
    expect(row(page, mine)).to_be_visible()
    expect(row(page, theirs)).to_have_count(0)
    expect(row(page, mine).get_by_role("cell").nth(2)).to_have_text("pending")
    # No user filter for a member: they see only their own.
    expect(page.get_by_label("User")).to_have_count(0)

    response = page.goto(f"/jobs/{theirs}")
    assert response.status == 404
    expect(page.get_by_role("heading", name="Not Found")).to_be_visible()
    expect(page.get_by_text(theirs)).to_be_visible()

    page.goto("/")
    page.get_by_role("link", name=mine[:8]).click()
    expect(page).to_have_url(re.compile(f"/jobs/{mine}$"))
    expect(page.get_by_role("heading", name=re.compile(f"Job {mine[:8]}"))).to_be_visible()


def test_another_organizations_job_and_a_malformed_id_are_404_pages(signed_in, client_as, tenants):
    elsewhere = send(client_as(tenants.globex.members[0]), delay_ms=600_000)
    page = signed_in(tenants.acme.admin)
    for path in (f"/jobs/{elsewhere}", "/jobs/not-a-job", f"/jobs/{elsewhere[:8]}"):
        response = page.goto(path)
        assert (response.status, response.headers["content-type"].split(";")[0]) == (404, "text/html"), path
        expect(page.get_by_role("heading", name="Not Found")).to_be_visible()
    expect(row(page, elsewhere)).to_have_count(0)
    page.goto("/")
    expect(row(page, elsewhere)).to_have_count(0)


def test_an_admin_cancels_a_members_job_with_a_reason(signed_in, client_as, tenants):
    member = tenants.acme.members[0]
    job_id = send(client_as(member), delay_ms=600_000)
    page = signed_in(tenants.acme.admin)
    expect(row(page, job_id)).to_be_visible()  # an admin sees the organization's jobs
    page.goto(f"/jobs/{job_id}")
    expect(page.get_by_role("button", name="Retry job")).to_have_count(0)
    page.get_by_label("Reason").fill("duplicate of another job")
    page.get_by_role("button", name="Cancel job").click()

    expect(page).to_have_url(re.compile(f"/jobs/{job_id}$"))
    expect(page.locator("#job-summary [data-field=status]")).to_have_text("cancelled")
    expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)
    cancelled = event_row(page, "cancelled")
    admin_email = emails(tenants)[tenants.acme.admin]
    expect(cancelled).to_contain_text(admin_email)
    expect(cancelled).to_contain_text("duplicate of another job")
    row_now = job_row(job_id)
    assert (row_now["status"], row_now["cancel_reason"], str(row_now["cancelled_by"])) == (
        "cancelled",
        "duplicate of another job",
        tenants.acme.admin,
    )


def test_another_member_of_the_organization_gets_no_buttons_and_no_page(signed_in, client_as, tenants):
    alice, bob = tenants.acme.members
    job_id = send(client_as(alice), delay_ms=600_000)
    page = signed_in(bob)
    assert page.goto(f"/jobs/{job_id}").status == 404
    expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)


def test_a_member_cancels_their_running_job_and_its_worker_stops_it(signed_in, client_as, workers, tenants):
    workers()
    alice = tenants.acme.members[0]
    job_id = send(client_as(alice), args={"delay_ms": 600_000, "check_cancellation": True})
    wait_for(lambda: job_row(job_id)["status"] == "active", what="the job to start", timeout=30)

    page = signed_in(alice)
    page.goto(f"/jobs/{job_id}")
    expect(page.locator("#job-summary [data-field=status]")).to_have_text("active")
    page.get_by_role("button", name="Cancel job").click()
    expect(page.locator("#job-summary [data-field=status]")).to_have_text("cancelled")
    wait_for(lambda: events(job_id)[-1][0] == "execution_stopped", what="the worker to stop the job", timeout=30)
    page.reload()
    expect(event_row(page, "execution_stopped")).to_have_count(1)
    assert [event[0] for event in events(job_id)].count("started") == 1


def test_retry_on_a_failed_job_opens_the_new_job(signed_in, client_as, workers, tenants):
    workers()
    alice = tenants.acme.members[0]
    job_id = send(client_as(alice), args={"should_fail": True})
    wait_for(lambda: job_row(job_id)["status"] == "failed", what="the job to fail", timeout=30)

    page = signed_in(alice)
    page.goto(f"/jobs/{job_id}")
    error = page.locator(".error-box")
    expect(error).to_contain_text("IntentionalFailure: intentional failure (should_fail=True)")
    expect(page.get_by_text("Stack trace")).to_have_count(0)  # a tenant never sees the stack
    expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)
    page.get_by_role("button", name="Retry job").click()

    expect(page).not_to_have_url(re.compile(f"/jobs/{job_id}$"))
    new_id = re.search(r"/jobs/([0-9a-f-]{36})$", page.url)[1]
    assert job_row(new_id)["retry_of"] is not None and str(job_row(new_id)["retry_of"]) == job_id
    expect(page.get_by_role("heading", name=re.compile(f"Job {new_id[:8]}"))).to_be_visible()
    page.get_by_role("link", name=job_id[:8]).first.click()
    expect(page).to_have_url(re.compile(f"/jobs/{job_id}$"))
    expect(page.locator("dl.fields").get_by_role("link", name=new_id[:8])).to_be_visible()
    expect(page.get_by_role("button", name="Retry job")).to_have_count(0)  # retried once: its retry is linked


def test_an_operator_sees_every_tenant_the_stack_and_may_cancel_but_not_retry(signed_in, client_as, workers, tenants):
    workers()
    failed = send(client_as(tenants.globex.members[0]), args={"should_fail": True})
    waiting = send(client_as(tenants.acme.members[0]), delay_ms=600_000)
    wait_for(lambda: job_row(failed)["status"] == "failed", what="the job to fail", timeout=30)

    page = signed_in(OPERATOR)
    expect(row(page, failed)).to_be_visible()
    expect(row(page, waiting)).to_be_visible()
    page.goto(f"/jobs/{failed}")
    expect(page.get_by_text("Stack trace")).to_be_visible()
    expect(page.get_by_role("button", name="Retry job")).to_have_count(0)
    page.goto(f"/jobs/{waiting}")
    page.get_by_role("button", name="Cancel job").click()
    expect(page.locator("#job-summary [data-field=status]")).to_have_text("cancelled")
    expect(event_row(page, "cancelled")).to_contain_text("operator ops")


def test_the_workers_page_shows_each_process_and_its_jobs_to_operators_only(signed_in, client_as, workers, tenants):
    workers()
    job_id = send(client_as(tenants.acme.members[0]), args={"delay_ms": 600_000, "check_cancellation": True})
    holder = wait_for(lambda: job_row(job_id)["worker_process"], what="the job to start", timeout=30)

    member = signed_in(tenants.acme.admin)
    expect(member.get_by_role("link", name="Workers")).to_have_count(0)
    assert member.goto("/workers").status == 403
    expect(member.get_by_role("heading", name="Forbidden")).to_be_visible()

    page = signed_in(OPERATOR)
    page.get_by_role("link", name="Workers").click()
    worker = page.locator(f'tr[data-worker-id="{holder}"]')
    expect(worker).to_contain_text("live")
    expect(worker.get_by_role("link", name=job_id[:8])).to_be_visible()
    expect(worker).to_contain_text(holder.split(":")[0])  # the host
    expect(page.get_by_role("heading", name="Recent recoveries")).to_be_visible()


def test_the_jobs_page_filters_counts_and_pages_by_keyset(signed_in, client_as, tenants):
    alice = client_as(tenants.acme.members[0])
    response = alice.post(
        "/api/jobs", json={"type": "test_job", "jobs": [{"delay_ms": n} for n in range(55)], "delay_ms": 600_000}
    )
    assert response.status_code == 201, response.text
    ids = response.json()["job_ids"]
    page = signed_in(tenants.acme.admin)

    counts = page.get_by_role("region", name="Jobs by status")
    expect(counts.get_by_role("link", name=re.compile(r"^pending\s+55$"))).to_be_visible()
    expect(page.locator("table.jobs tbody tr")).to_have_count(50)
    page.get_by_role("link", name="Older jobs →").click()
    expect(page.locator("table.jobs tbody tr")).to_have_count(5)
    expect(page.get_by_role("link", name="Older jobs →")).to_have_count(0)
    page.get_by_role("link", name="← Newer jobs").click()
    expect(page.locator("table.jobs tbody tr")).to_have_count(50)
    shown = page.locator("table.jobs tbody tr").evaluate_all("rows => rows.map(r => r.dataset.jobId)")
    assert set(shown) <= set(ids) and len(set(shown)) == 50

    page.get_by_label("Status", exact=True).select_option("completed")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("No job matches these filters.")).to_be_visible()
    page.get_by_label("User").fill("nobody@nowhere.example")
    page.get_by_label("Status", exact=True).select_option("")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("no user nobody@nowhere.example")).to_be_visible()


def test_keyboard_users_skip_to_the_content_and_reach_the_forms(signed_in, client_as, tenants):
    job_id = send(client_as(tenants.acme.members[0]), delay_ms=600_000)
    page = signed_in(tenants.acme.members[0])
    page.goto(f"/jobs/{job_id}")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    reason = page.get_by_label("Reason")
    for _ in range(20):
        page.keyboard.press("Tab")
        if reason.evaluate("field => field === document.activeElement"):
            break
    expect(reason).to_be_focused()
    page.keyboard.type("typed at the keyboard")
    page.keyboard.press("Enter")  # submits the form
    expect(page.locator("#job-summary [data-field=status]")).to_have_text("cancelled")
    assert job_row(job_id)["cancel_reason"] == "typed at the keyboard"


def test_a_narrow_window_shows_each_job_as_a_card_without_sideways_scrolling(signed_in, client_as, tenants):
    job_id = send(client_as(tenants.acme.members[0]), delay_ms=600_000)
    page = signed_in(tenants.acme.members[0], width=360, height=740)
    expect(row(page, job_id)).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    card = row(page, job_id).bounding_box()
    assert card["x"] >= 0 and card["x"] + card["width"] <= 360, card  # the whole card fits the window
    page.goto(f"/jobs/{job_id}")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    expect(page.get_by_role("button", name="Cancel job")).to_be_visible()
