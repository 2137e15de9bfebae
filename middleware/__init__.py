"""Dramatiq middleware that persists the lifecycle of every job."""

from .arguments import ArgumentValidation
from .context import JobContext, current_job
from .heartbeat import LeaseKeeper
from .lease import Lease, LeaseExpired
from .logging_setup import StructuredLogging
from .maintenance import Maintenance
from .progress import ProgressMiddleware, ProgressWriter, report_progress
from .sends import SendRecorder
from .status import StatusMiddleware

__all__ = [
    "ArgumentValidation",
    "JobContext",
    "Lease",
    "LeaseExpired",
    "LeaseKeeper",
    "Maintenance",
    "ProgressMiddleware",
    "ProgressWriter",
    "SendRecorder",
    "StatusMiddleware",
    "StructuredLogging",
    "current_job",
    "report_progress",
]
