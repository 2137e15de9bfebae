"""structlog for our lines and, through the standard library, for Dramatiq's: one format for all."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog
from structlog.tracebacks import ExceptionDictTransformer

SHARED = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


class _ResultsNotice(logging.Filter):
    """Drops Dramatiq's warning that a returned value is discarded: the status middleware keeps
    every result in job_status.result, so it would be wrong on every job."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "dramatiq.worker.WorkerThread" and "Results middleware" in record.getMessage())


class InterruptSafeHandler(logging.StreamHandler):
    """A StreamHandler whose lock can't be leaked by an asynchronous exception.

    dramatiq-abort (Abort) and Dramatiq's TimeLimit raise exceptions into a running worker
    thread at any bytecode. logging.Handler.handle in Python < 3.13 calls acquire() before its
    try: an exception landing in between leaves the lock held forever, and every thread that logs
    then hangs (flush, called by emit, has the same gap). `with` takes the lock and arms its
    release in one step.
    """

    def handle(self, record: logging.LogRecord) -> logging.LogRecord | bool:
        rv = self.filter(record)
        if rv:
            with self.lock:
                self.emit(record)
        return rv

    def flush(self) -> None:
        with self.lock:
            if self.stream and hasattr(self.stream, "flush"):
                self.stream.flush()


def configure_logging(fmt: str = "auto", level: str = "INFO", stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    as_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    if as_json:
        # show_locals=False: locals would put actor arguments (user data) into the logs.
        final = [
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
            structlog.processors.JSONRenderer(),
        ]
    else:
        final = [structlog.dev.ConsoleRenderer()]
    structlog.configure(
        processors=[*SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = InterruptSafeHandler(stream)
    handler.addFilter(_ResultsNotice())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=SHARED,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
        )
    )
    root = logging.getLogger()
    # The dramatiq CLI installs its own handlers before it imports our modules: replace them.
    root.handlers = [handler]
    root.setLevel(level)
