"""Who is writing: a name for each worker thread, unique across hosts, processes and restarts."""

from __future__ import annotations

import os
import socket
import threading
import uuid

_process: tuple[int, str] | None = None


def process_id() -> str:
    """host:pid:boot, new after a fork or restart even when the pid is reused."""
    global _process
    pid = os.getpid()
    if _process is None or _process[0] != pid:
        _process = (pid, f"{socket.gethostname()}:{pid}:{uuid.uuid4().hex[:8]}")
    return _process[1]


def worker_id() -> str:
    return f"{process_id()}/{threading.current_thread().name}"
