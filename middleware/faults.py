"""Faults on request, for recovery tests and the chaos run; in the stack only when
JOBS_ALLOW_FAULT_INJECTION=1, never in production."""

from __future__ import annotations

import os
import signal
from typing import Any

from dramatiq import Broker, Message
from dramatiq.middleware import Middleware

#: Message option: kill the worker process once the attempt's end is recorded, before the ack.
CRASH_BEFORE_ACK = "crash_before_ack"


class FaultInjection(Middleware):
    """Kills the worker process between the status write of an attempt's end and the message's
    acknowledgement, for messages sent with `crash_before_ack=True`.

    It comes before the status middleware in the list, so that its after-hook runs after the
    status middleware's (after-hooks run in reverse).
    """

    def after_process_message(
        self, broker: Broker, message: Message, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        if message.options.get(CRASH_BEFORE_ACK):
            os.kill(os.getpid(), signal.SIGKILL)
