#!/usr/bin/env python3
"""Regenerates the README's screenshots of the dashboard: the jobs page (as an organization's
admin) and a running job's page, taken by Debian's Chromium through Playwright, as the browser
tests drive it.

Everything runs on a scratch database and Redis namespace of its own (on the servers of
ADMIN_DATABASE_URL and REDIS_URL), removed at the end: the schema and the seed's tenants, one
worker process, `jobctl serve` on a free port, and a mix of jobs (completed, failed, cancelled,
waiting, one running and reporting progress).

Usage: scripts/screenshots.py [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from polling import wait_until

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = "jobs_screenshots"
CHROMIUM = "/usr/bin/chromium"


def _in_scratch(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{SCRATCH}"))


def _configure() -> None:
    """The scratch database and namespace, before `actors` reads its settings."""
    from middleware.settings import Settings

    settings = Settings.from_env()
    os.environ.update(
        ADMIN_DATABASE_URL=_in_scratch(settings.admin_database_url),
        DATABASE_URL=_in_scratch(settings.database_url),
        WORKER_DATABASE_URL=_in_scratch(settings.worker_database_url),
        JOBS_NAMESPACE="jobs-screenshots",
        JOBS_API_SECRET=secrets.token_hex(32),
        JOBS_LOG_FORMAT="json",
        JOBS_MIN_BACKOFF_MS="200",
        JOBS_MAX_BACKOFF_MS="500",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    _configure()

    import db

    db.migrate(os.environ["ADMIN_DATABASE_URL"])
    import actors  # noqa: F401 - configures the database and the broker from the environment
    from db.fixtures import seed
    from middleware.log_format import configure_logging

    configure_logging("console", "WARNING")
    tenants = seed(os.environ["ADMIN_DATABASE_URL"])
    logs = Path(tempfile.mkdtemp(prefix="screenshots-"))
    started: list[subprocess.Popen] = []
    try:
        started.append(
            _start(
                [sys.executable, "-m", "jobs.worker", "--processes", "1", "--threads", "4"],
                logs / "worker.log",
                DATABASE_URL=os.environ["WORKER_DATABASE_URL"],
            )
        )
        server = _start(
            [str(ROOT / ".venv" / "bin" / "jobctl"), "serve", "--port", "0"],
            logs / "server.log",
            stdout=subprocess.PIPE,
        )
        started.append(server)
        url = _listening(server)
        running = _send_jobs(tenants)
        _shoot(url, tenants, running, args.out)
    finally:
        for process in reversed(started):
            process.send_signal(signal.SIGINT if process is started[-1] else signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        _clean_up()
    print(f"screenshots in {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out} (logs: {logs})")
    return 0


def _start(command: list[str], log: Path, stdout: int | None = None, **env: str) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            command, stdout=stdout or out, stderr=out, text=True, env={**os.environ, **env}, cwd=ROOT
        )


def _listening(server: subprocess.Popen) -> str:
    for line in server.stdout:
        found = re.search(r"listening on (http://\S+) ", line)
        if found:
            return found[1]
    raise SystemExit("jobctl serve ended before it listened")


def _send_jobs(tenants: dict) -> str:
    """A mix of jobs of Acme's people, waited for until each is where the picture wants it; the
    id of the one left running."""
    from db.queries import get_job
    from jobs import service

    acme = tenants["organizations"][0]
    admin, alice, bob = (
        next(u for u in acme["users"] if u["email"].startswith(name)) for name in ("admin", "alice", "bob")
    )
    done = [
        service.send_job("test_job", user_id=alice["id"], args={"delay_ms": 200}),
        service.send_job("initialize", user_id=bob["id"], args={"course_id": acme["courses"][0]["id"]}),
        service.send_job("test_job", user_id=bob["id"], args={"fail_attempts": 1}),
        service.send_job("test_job", user_id=alice["id"], args={"should_fail": True}),
    ]
    doomed = service.send_job("test_job", user_id=bob["id"], args={"delay_ms": 600_000, "check_cancellation": True})
    service.send_job("test_job", user_id=alice["id"], args={"delay_ms": 500}, delay_ms=3_600_000)
    running = service.send_job("test_job", user_id=alice["id"], args={"delay_ms": 30_000})
    finished = ("completed", "failed", "cancelled")
    wait_until(lambda: all(get_job(j)["status"] in finished for j in done), what="the jobs to finish", timeout=60)
    wait_until(lambda: get_job(doomed)["status"] == "active", what="the job to start", timeout=60)
    service.cancel_job(doomed, admin["id"], "sent twice by mistake")
    wait_until(lambda: get_job(running)["progress"] >= 40, what="the job to report 40%", timeout=60)
    return running


def _shoot(url: str, tenants: dict, running: str, out: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    from web import tokens

    acme = tenants["organizations"][0]
    admin = next(u for u in acme["users"] if u["role"] == "admin")
    alice = next(u for u in acme["users"] if u["email"].startswith("alice"))
    out.mkdir(parents=True, exist_ok=True)
    secret = os.environ["JOBS_API_SECRET"].encode()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        for who, path, name, height in (
            (admin, "/", "jobs.png", 640),
            (alice, f"/jobs/{running}", "job.png", 900),
        ):
            context = browser.new_context(base_url=url, viewport={"width": 1200, "height": height})
            page = context.new_page()
            page.goto(f"/login?token={tokens.mint(secret, who['id'], timedelta(minutes=10))}")
            expect(page.get_by_role("heading", name="Jobs", level=1)).to_be_visible()
            page.goto(path)
            page.screenshot(path=str(out / name))
            context.close()
        browser.close()


def _clean_up() -> None:
    import psycopg2
    import redis
    from psycopg2 import sql

    from db.connection import database

    database.close()
    admin = urlunsplit(urlsplit(os.environ["ADMIN_DATABASE_URL"])._replace(path="/postgres"))
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(SCRATCH)))
    conn.close()
    client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    namespace = os.environ["JOBS_NAMESPACE"]
    keys = [key for pattern in (f"{namespace}:*", f"{namespace}-abort:*") for key in client.scan_iter(match=pattern)]
    if keys:
        client.delete(*keys)
    client.close()


if __name__ == "__main__":
    sys.exit(main())
