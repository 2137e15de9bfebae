"""The workers page (operators only; a 403 page for anyone else): each worker process with its
host, heartbeat age, lease and current jobs, and the recent recoveries of lost workers' jobs."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from ..auth import OperatorCaller
from ..database import Threads
from ..templating import page
from . import reading
from .layout import layout

router = APIRouter()


@router.get("/workers", response_class=HTMLResponse)
async def workers_page(request: Request, caller: OperatorCaller, threads: Threads, all: str = "") -> Response:
    """Worker processes seen in the last hour (or those that hold a running job); `all=1`: every one."""
    shown = await threads.run(reading.workers_view, include_all=all == "1")
    return page(
        "workers.html",
        **layout(request, caller, {}, nav="workers"),
        workers=shown["workers"],
        not_shown=shown["not_shown"],
        include_all=all == "1",
        recoveries=shown["recoveries"],
        now=shown["now"],
    )
