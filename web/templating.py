"""The pages' HTML: Jinja2 templates from the package (web/templates), rendered with
autoescaping, and answered with the headers every page carries (no caching of a tenant's data,
no script or style from anywhere but this server, no framing).

Also the HTML error pages: outside /api an error is a page (401 is the sign-in page), inside it
stays a problem (web.problems decides which, by path)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

#: Where the static files are served from; their names carry their version (STYLE: vendored).
STATIC = "/static"
STYLESHEET = f"{STATIC}/dashboard-1.css"
SCRIPT = f"{STATIC}/dashboard-1.js"
ICON = f"{STATIC}/favicon-1.svg"
#: A job's arguments or result shown on a page: longer JSON is cut (the API gives it whole).
MAX_JSON_CHARS = 20_000

HEADERS = {
    # Pages show one tenant's data: not kept by the browser's or any shared cache.
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def short(job_id: object) -> str:
    """A job id as the pages name it: its first 8 hex digits (jobctl takes them too)."""
    return str(job_id)[:8]


def when(moment: datetime | None) -> str:
    """A moment in UTC, to the second, with its zone."""
    if moment is None:
        return "—"
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(timezone.utc).isoformat()


def duration(span: timedelta | None) -> str:
    """A span as a person reads it: 0.4 s, 12 s, 3 min 5 s, 2 h 10 min, 3 d 4 h."""
    if span is None:
        return "—"
    seconds = span.total_seconds()
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    if seconds < 10:
        text = f"{seconds:.1f} s"
    elif seconds < 60:
        text = f"{int(seconds)} s"
    elif seconds < 3600:
        text = f"{int(seconds // 60)} min {int(seconds % 60)} s"
    elif seconds < 86400:
        text = f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"
    else:
        text = f"{int(seconds // 86400)} d {int(seconds % 86400 // 3600)} h"
    return sign + text


def pretty_json(value: Any) -> str:
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)
    if len(text) <= MAX_JSON_CHARS:
        return text
    return f"{text[:MAX_JSON_CHARS]}\n… ({len(text):,} characters: GET /api/jobs/ID gives them whole)"


def thousands(count: int) -> str:
    return f"{count:,}"


environment = Environment(
    loader=PackageLoader("web", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters.update(
    short=short, when=when, iso=iso, duration=duration, pretty_json=pretty_json, thousands=thousands
)
environment.globals.update(STYLESHEET=STYLESHEET, SCRIPT=SCRIPT, ICON=ICON)


def page(template: str, *, status: int = 200, headers: dict[str, str] | None = None, **context: Any) -> HTMLResponse:
    """The page `template` rendered with `context` (plus `caller`, `csrf_token` and `stream`,
    None unless given), with the pages' headers."""
    context = {"caller": None, "csrf_token": None, "stream": None, "nav": None, **context}
    html = environment.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers={**HEADERS, **(headers or {})})


def error_page(
    status: int, detail: str, *, headers: dict[str, str] | None = None, base_url: str | None = None
) -> HTMLResponse:
    """The HTML answer to an error outside /api: 401 is the sign-in page (how to get a link),
    every other status a page that says it in one line."""
    phrase = HTTPStatus(status).phrase
    template = "signin.html" if status == 401 else "error.html"
    return page(
        template, status=status, headers=headers, status_code=status, phrase=phrase, detail=detail, base_url=base_url
    )
