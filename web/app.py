"""The application factory: `create_app(settings)` builds the server (tests make their own)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from . import api, metrics, pages, problems, session
from .access_log import AccessLog
from .body_limit import BodyLimit
from .database import DatabaseThreads
from .hub import Hub
from .settings import WebSettings
from .viewers import Viewers


def create_app(settings: WebSettings) -> FastAPI:
    app = FastAPI(
        title="course-jobs",
        summary="Send, follow, cancel and retry the course platform's background jobs.",
        lifespan=_lifespan,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.viewers = Viewers()
    problems.install(app)
    # Outermost last: the log sees every answer, the refusal of an oversized body included.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(AccessLog)
    app.include_router(api.router)
    app.include_router(session.router)
    app.include_router(metrics.router)
    app.include_router(pages.router)
    # From the installed package (package data), not from a directory beside the sources.
    app.mount("/static", StaticFiles(packages=[("web", "static")]), name="static")
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Configures the database and the broker from the environment, as in every process that
    # sends jobs (cancellations tell workers through the broker too).
    import actors
    from db.notifications import Listener

    system = app.state.settings.system
    threads = DatabaseThreads(app.state.settings.database_threads)
    app.state.database = threads
    # The streams' one listening connection (web.hub), beside the threads' connections.
    hub = Hub(lambda: Listener(system.database_url, system.db_limits()))
    app.state.hub = hub
    hub.start()
    try:
        yield
    finally:
        await asyncio.to_thread(hub.stop)
        threads.close()
        actors.broker.close()
