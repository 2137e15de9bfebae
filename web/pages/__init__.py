"""The dashboard's pages, rendered on the server (web/templates) over the same reads as the API:
the jobs (`/`), a job (`/jobs/{id}`), the workers (`/workers`, operators only). Signed in by the
session cookie of /login; a form that changes something carries the session's CSRF token."""

from __future__ import annotations

from fastapi import APIRouter

from . import jobs, workers

router = APIRouter(include_in_schema=False)
router.include_router(jobs.router)
router.include_router(workers.router)
