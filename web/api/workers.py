"""/api/workers: the worker processes, for operators only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ..auth import OperatorCaller
from ..database import Threads
from . import reading

router = APIRouter(tags=["workers"])


@router.get("/workers", responses={403: {"description": "the caller is not an operator"}})
async def workers(caller: OperatorCaller, threads: Threads, all: bool = False) -> dict[str, Any]:
    """Each worker process: host, pid, heartbeat, lease (`state`: live, lost or stopped) and the
    jobs it runs; those silent for over an hour only with `all=true` (`not_shown` counts them)."""
    return await threads.run(reading.workers, include_all=all)
