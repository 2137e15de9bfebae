"""Gives `dramatiq` worker processes our log format, and Dramatiq's lines our rules."""

from __future__ import annotations

import os
from typing import Any

import structlog
from dramatiq import Broker
from dramatiq.middleware import Middleware

from .dramatiq_lines import fit_dramatiq_lines
from .identity import process_id
from .log_arguments import LOG_ARGUMENTS
from .log_format import configure_logging
from .settings import Settings

log = structlog.get_logger(__name__)


class StructuredLogging(Middleware):
    """Replaces the handlers that the dramatiq CLI installs with structlog's, in JSON or console
    form, and says first what the worker process connects to (no password); `after_process_boot`
    fires only in processes started by that CLI, so services that import the actors keep their
    own logging. In every process that runs a worker, Dramatiq's own lines are fitted to ours
    (middleware/dramatiq_lines.py).

    Actor option `log_arguments=True`: the actor's argument values are logged, not only their
    names (middleware/log_arguments.py).

    Parameters:
      settings(Settings): the log format and level, and what the worker connects to.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def actor_options(self) -> set[str]:
        return {LOG_ARGUMENTS}

    def after_process_boot(self, broker: Broker) -> None:
        configure_logging(self.settings.log_format, self.settings.log_level)
        log.info("worker_booted", worker=process_id(), pid=os.getpid(), **self.settings.describe())

    def before_worker_boot(self, broker: Broker, worker: Any) -> None:
        fit_dramatiq_lines(broker)
