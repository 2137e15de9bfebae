"""The JSON API, under /api: one router per resource."""

from __future__ import annotations

from fastapi import APIRouter

from . import jobs, streams, workers

router = APIRouter(prefix="/api")
router.include_router(jobs.router)
router.include_router(streams.router)
router.include_router(workers.router)
