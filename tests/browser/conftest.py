"""Browser tests: Debian's Chromium (/usr/bin/chromium, `apt-get install chromium`; never a
downloaded browser) driven by Playwright against the real server of tests/api (one `jobctl
serve` per pytest worker), with real worker processes where a job must run.

One browser per pytest worker, started once; each test opens a context (its own cookies) per
person it signs in, through the login link as a person would. A test that fails leaves a
screenshot of each of its pages in test-results/browser/."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.api.conftest import OPERATOR, client_as, operator_token, user_token, workers  # noqa: F401
from tests.api.conftest import server as server  # noqa: F401 - the fixture, which the fixtures below take
from tests.support.server import Server

CHROMIUM = "/usr/bin/chromium"
RESULTS = Path(__file__).resolve().parents[2] / "test-results" / "browser"
#: How long an expectation waits: a job's run on a machine loaded by the whole suite.
EXPECT_TIMEOUT_MS = 20_000

expect.set_options(timeout=EXPECT_TIMEOUT_MS)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/bootstrap.sh --tests installs it (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        launched.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Keeps each phase's report on the test, for `signed_in` to see whether it failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def new_context(
    browser: Browser, server: Server, request: pytest.FixtureRequest
) -> Iterator[Callable[..., BrowserContext]]:
    """`new_context(width=, height=)`: a browser context of its own (its own cookies) on the
    server; closed after the test, once each of its pages is saved as a screenshot if the test
    failed."""
    contexts: list[BrowserContext] = []

    def make(*, width: int = 1280, height: int = 800) -> BrowserContext:
        context = browser.new_context(base_url=server.url, viewport={"width": width, "height": height})
        contexts.append(context)
        return context

    yield make
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        RESULTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        for number, page in enumerate(page for context in contexts for page in context.pages):
            path = RESULTS / f"{name}-{number}.png"
            try:
                page.screenshot(path=str(path), full_page=True)
            except Exception as error:  # noqa: BLE001 - a screenshot that fails must not hide the test's failure
                print(f"no screenshot of {page.url}: {error}")
            else:
                print(f"screenshot of {page.url}: {path}")
    for context in contexts:
        context.close()


@pytest.fixture
def signed_in(new_context) -> Callable[..., Page]:
    """`signed_in(user_id)` (or OPERATOR): a page of a new browser context, signed in through
    the login link and showing the jobs page. `width`/`height`: the window's size."""

    def open_as(who: object, *, width: int = 1280, height: int = 800) -> Page:
        page = new_context(width=width, height=height).new_page()
        token = operator_token() if who is OPERATOR else user_token(who)
        page.goto(f"/login?token={token}")
        expect(page).to_have_url(re.compile(r"/$"))
        expect(page.get_by_role("heading", name="Jobs", level=1)).to_be_visible()
        return page

    return open_as


@pytest.fixture
def anonymous(new_context) -> Page:
    """A page of a browser context that is signed in as no one."""
    return new_context().new_page()
