"""How this system's lines reach the standard library's logging, and the format an application
(a worker, the command line) gives them, Dramatiq's own lines included.

Library code only logs: `use_stdlib_logging()` (called when `actors` is imported) sends
structlog's lines to the `logging` logger of their module and installs no handler, so a service
that has not configured logging prints nothing of ours, and one that has gets our lines through
its own handlers. `configure_logging()` is for the programs that own their process: one handler
on the root logger, JSON or console, for every line.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog
from dramatiq.compat import StreamablePipe
from dramatiq.middleware import CurrentMessage
from structlog.tracebacks import ExceptionDictTransformer

from db.redact import mask_secrets


def _add_job_id(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """The job a worker thread runs, on every line logged while it runs it (Dramatiq's own lines,
    an actor's) that does not name one already; a filter may have named it on the record."""
    if "job_id" not in event_dict:
        record = event_dict.get("_record")
        job_id = getattr(record, "job_id", None)
        if job_id is None:
            message = CurrentMessage.get_current_message()
            job_id = message.message_id if message is not None else None
        if job_id is not None:
            event_dict["job_id"] = job_id
    return event_dict


def _mask_fields(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """No password in a field of ours, whoever's handler writes it (errors quote connection strings)."""
    for key, value in event_dict.items():
        if isinstance(value, str) and ("@" in value or "=" in value):
            event_dict[key] = mask_secrets(value)
    return event_dict


SHARED = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    _add_job_id,
]

# Fields that an application's own formatter shows in its own way (see _Event).
_SHOWN_BY_THE_HANDLER = {"event", "level", "logger", "timestamp"}


class _Event(dict):
    """A line of ours as a `logging` record carries it: the event dict, for our formatter (and for
    tests, which read `record.msg`), which an application's plain formatter shows as
    `job_completed job_id=... duration_ms=12` rather than as a dict."""

    def __str__(self) -> str:
        fields = " ".join(f"{key}={value}" for key, value in self.items() if key not in _SHOWN_BY_THE_HANDLER)
        return f"{self.get('event', '')} {fields}".rstrip()


def _to_stdlib(logger: Any, method: str, event_dict: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    args, kwargs = structlog.stdlib.ProcessorFormatter.wrap_for_formatter(logger, method, event_dict)
    return (_Event(args[0]),), kwargs


def use_stdlib_logging() -> None:
    """Sends structlog's lines through the standard library's loggers, unless the application has
    configured structlog itself. structlog's default prints every line to stdout."""
    if not structlog.is_configured():
        _configure_structlog()


def _configure_structlog() -> None:
    structlog.configure(
        # filter_by_level first: a line below its logger's level costs nothing more.
        processors=[structlog.stdlib.filter_by_level, *SHARED, _mask_fields, _to_stdlib],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


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


def is_terminal(stream: TextIO) -> bool:
    """Whether lines written to `stream` end up on a terminal. A worker process of the dramatiq
    CLI writes into a pipe to the CLI's main process, which writes them to its stderr: the
    worker's own file descriptor 2, inherited (`sys.__stderr__`), says where they land."""
    if isinstance(stream, StreamablePipe):
        stream = sys.__stderr__
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def resolved_format(fmt: str, stream: TextIO) -> str:
    """`auto` made `console` or `json`, for lines written to `stream`."""
    if fmt != "auto":
        return fmt
    return "console" if is_terminal(stream) else "json"


def configure_logging(fmt: str = "auto", level: str = "INFO", stream: TextIO | None = None) -> None:
    """One handler on the root logger, in place of any other: every line, ours and the libraries',
    as JSON (`json`) or for people (`console`); `auto` picks console when the lines reach a terminal."""
    stream = stream or sys.stderr
    _configure_structlog()
    root = logging.getLogger()
    # The dramatiq CLI installs its own handlers before it imports our modules: replace them.
    root.handlers = [handler_for(resolved_format(fmt, stream), stream)]
    root.setLevel(level)
    # What a LogRecord would look up for every line and no line of ours shows: the caller's file
    # and line (a walk up the stack; the logging module's documented switch), the thread's name,
    # the process's name and id. About a third of a line's cost in a worker.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    # Peewee logs every statement with its parameters at DEBUG: job arguments and results.
    logging.getLogger("peewee").setLevel(max(logging.INFO, root.level))
    # Python's warnings become lines in the same format, not bare text between them.
    logging.captureWarnings(True)


def handler_for(fmt: str, stream: TextIO) -> logging.Handler:
    """The handler that writes lines to `stream` as JSON (`json`) or for people (`console`), with
    the passwords of connection strings masked in the rendered line, tracebacks included."""
    if fmt == "json":
        # show_locals=False: locals would put actor arguments (user data) into the logs.
        final = [
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
            structlog.processors.JSONRenderer(),
        ]
    else:
        # plain_traceback: rich's tracebacks, the default when rich is installed, show locals.
        final = [structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)]
    handler = InterruptSafeHandler(stream)
    formatter = _JSONFormatter if fmt == "json" else structlog.stdlib.ProcessorFormatter
    handler.setFormatter(
        formatter(
            foreign_pre_chain=SHARED,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final, _mask_rendered],
        )
    )
    return handler


class _JSONFormatter(structlog.stdlib.ProcessorFormatter):
    """ProcessorFormatter, with a short way for the usual line: one of ours with no exception,
    rendered straight from its event dict (ProcessorFormatter copies the record and runs the
    logging module's formatter around the same rendering). Same line, a third of the cost."""

    _render = structlog.processors.JSONRenderer()

    def format(self, record: logging.LogRecord) -> str:
        event = record.msg
        if type(event) is not _Event or record.exc_info or record.stack_info or "exc_info" in event:
            return super().format(record)
        return mask_secrets(self._render(None, "", dict(event)))


def _mask_rendered(logger: Any, method: str, line: str) -> str:
    return mask_secrets(line)
