"""The demo's live view: the demo's own jobs, sent as `jobctl demo` sends them, fit an 80x24
terminal whatever their rows hold, and every frame says where the worker logs are."""

from __future__ import annotations

import itertools

import pytest

from db import queries
from db.fixtures import seed
from jobs import demo

HINT = "worker logs: .demo/workers.log  (17 jobs, 2 processes x 4 threads)"
STATUSES = ("pending", "active", "retrying", "completed", "failed", "cancelled")


@pytest.fixture
def sent(settings, stub_broker):
    """The demo's plan and the rows its jobs have in the database once sent (no worker runs them)."""
    tenants = seed(settings.admin_database_url)
    plan = demo.planned_jobs(tenants)
    jobs = demo.send_plan(plan, tenants)
    return plan, [queries.get_job(job_id) for job_id in jobs]


def widest(rows: list[dict]) -> list[dict]:
    """The same rows in every status, holding the longest values a cell can show: a full bar, a
    many-digit attempt, messages of several lines with tabs and terminal escapes in them."""
    long = "RuntimeError: " + "x" * 300 + "\n\tat line 2\x1b[2J\n" + "y" * 100
    return [
        {
            **row,
            "status": status,
            "attempts": 999,
            "progress": 100,
            "error_message": long if status in ("failed", "retrying") else None,
            "progress_message": long,
        }
        for row, status in zip(rows, itertools.cycle(STATUSES))
    ]


def test_the_demo_fits_an_80x24_terminal(sent):
    plan, rows = sent
    assert len(plan) == 17
    lines = demo.frame(plan, rows, hint=HINT, width=80, height=24)
    assert len(lines) <= 24
    assert max(map(len, lines)) <= 80
    assert lines[0] == HINT
    for item in plan:
        assert any(line.startswith(item.label) for line in lines), item.label
    delayed = next(line for line in lines if line.startswith("starts after 2 s"))
    assert " due " in delayed
    assert lines[-1] == "pending: 17"


def test_the_widest_rows_are_cut_not_wrapped(sent):
    plan, rows = sent
    lines = demo.frame(plan, widest(rows), hint=HINT, width=80, height=24)
    assert len(lines) == 20  # the hint, the columns, 17 jobs, the counts
    assert max(map(len, lines)) == 80
    assert not any(c in line for line in lines for c in "\n\t\x1b")
    failed = next(line for line in lines if " failed " in line)
    assert "RuntimeError: xxx" in failed
    assert lines[-1] == "active: 3  cancelled: 2  completed: 3  failed: 3  pending: 3  retrying: 3"


def test_a_smaller_terminal_counts_the_jobs_it_cannot_show(sent):
    plan, rows = sent
    lines = demo.frame(plan, rows, hint=HINT, width=40, height=10)
    assert len(lines) == 10
    assert max(map(len, lines)) <= 40
    assert lines[0] == HINT[:40]
    assert lines[-2] == "... 11 more jobs (a taller terminal show"
    assert lines[-1] == "pending: 17"


@pytest.mark.parametrize(("width", "height"), [(80, 24), (79, 24), (200, 60), (40, 10), (20, 2), (10, 1)])
def test_every_frame_begins_with_the_hint(sent, width, height):
    plan, rows = sent
    for state in (rows, widest(rows)):
        lines = demo.frame(plan, state, hint=HINT, width=width, height=height)
        assert lines[0] == HINT[:width]
        assert len(lines) <= height
        assert max(map(len, lines)) <= width


def test_without_a_height_every_job_is_shown(sent):
    plan, rows = sent
    lines = demo.frame(plan, rows, hint=HINT, width=80)
    assert len(lines) == 20


def test_a_painted_frame_redraws_in_place(sent):
    plan, rows = sent
    lines = demo.frame(plan, rows, hint=HINT, width=79, height=24)
    painted = demo.paint(lines)
    # From the top-left corner, over the last frame; no newline after the last line, so that 24
    # lines on a 24-line screen don't scroll it.
    assert painted.startswith("\x1b[H" + HINT + "\x1b[K\n")
    assert painted.count("\n") == len(lines) - 1
    assert painted.endswith(lines[-1] + "\x1b[K\x1b[J")


LINKS = [
    "sign in with a browser (the server: http://127.0.0.1:8000, its log: .demo/server.log):",
    *(f"  {who}: http://127.0.0.1:8000/login?token={'t' * 190}" for who in ("member a@b", "admin c@d", "operator x")),
]


def test_the_sign_in_links_are_shown_whole_and_the_jobs_fit_around_them(sent):
    plan, rows = sent
    lines = demo.frame(plan, widest(rows), hint=HINT, width=79, height=24, links=LINKS)
    assert lines[0] == HINT and lines[1:5] == LINKS  # whole: a link cut short signs no one in
    # The heading and 3 links of 238 characters wrap to 1 + 3 x 4 rows of 79 columns: beside the
    # hint, the columns' names and the counts, 7 jobs and the count of the others fit.
    assert sum(max(1, -(-len(line) // 79)) for line in lines) == 24
    assert lines[-2] == "... 10 more jobs (a taller terminal shows them)"
    assert max(map(len, lines[5:])) == 79


def test_a_terminal_too_small_for_the_links_shows_the_jobs(sent):
    plan, rows = sent
    lines = demo.frame(plan, rows, hint=HINT, width=79, height=12, links=LINKS)
    assert lines[0] == HINT and not any("login?token" in line for line in lines)
    assert len(lines) == 12


def test_a_line_that_fills_the_last_column_is_not_cleared_after(sent):
    plan, rows = sent
    link = "x" * 160  # two full rows of 80 columns: the cursor stays on its last character
    painted = demo.paint([HINT, link, "last"], columns=80)
    assert painted == f"\x1b[H{HINT}\x1b[K\n{link}\nlast\x1b[K\x1b[J"


def test_the_demo_makes_its_api_secret_once_for_its_owner_only(tmp_path):
    from jobs.demo_server import api_secret

    first = api_secret(tmp_path, {})
    assert len(first) == 64 and (tmp_path / "api_secret").stat().st_mode & 0o777 == 0o600
    assert api_secret(tmp_path, {}) == first
    assert api_secret(tmp_path, {"JOBS_API_SECRET": "s" * 40}) == "s" * 40
