"""Dramatiq middleware that persists the lifecycle of every job.

The names below are imported when first used (PEP 562), so that a process that needs one module
of the package (the `jobctl` command reading its settings and log format) doesn't load them all.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_WHERE = {
    "ArgumentValidation": "arguments",
    "JobContext": "context",
    "current_job": "context",
    "LeaseKeeper": "heartbeat",
    "Lease": "lease",
    "LeaseExpired": "lease",
    "StructuredLogging": "logging_setup",
    "Maintenance": "maintenance",
    "ProgressMiddleware": "progress",
    "ProgressWriter": "progress",
    "report_progress": "progress",
    "SendRecorder": "sends",
    "StatusMiddleware": "status",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value
