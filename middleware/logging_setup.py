"""Gives `dramatiq` worker processes our log format."""

from __future__ import annotations

from dramatiq import Broker
from dramatiq.middleware import Middleware

from .log_format import configure_logging


class StructuredLogging(Middleware):
    """Replaces the handlers that the dramatiq CLI installs with structlog's, in JSON or console
    form; `after_process_boot` fires only in processes started by that CLI, so services that
    import the actors keep their own logging."""

    def __init__(self, *, fmt: str = "auto", level: str = "INFO") -> None:
        self.fmt = fmt
        self.level = level

    def after_process_boot(self, broker: Broker) -> None:
        configure_logging(self.fmt, self.level)
