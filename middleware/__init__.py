"""Dramatiq middleware that persists the lifecycle of every job."""

from .arguments import ArgumentValidation
from .context import JobContext, current_job
from .logging_setup import StructuredLogging
from .progress import ProgressMiddleware, ProgressWriter, report_progress
from .status import StatusMiddleware

__all__ = [
    "ArgumentValidation",
    "JobContext",
    "ProgressMiddleware",
    "ProgressWriter",
    "StatusMiddleware",
    "StructuredLogging",
    "current_job",
    "report_progress",
]
