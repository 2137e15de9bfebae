"""An Abort raised into a logging thread must never leave a log handler's lock held."""

from __future__ import annotations

import ctypes
import io
import logging
import threading

from dramatiq_abort import Abort

from middleware.log_format import InterruptSafeHandler


def abort_thread(thread: threading.Thread) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(Abort))


def test_aborts_landing_while_a_thread_logs_leave_the_handler_usable():
    handler = InterruptSafeHandler(io.StringIO())
    logger = logging.getLogger("tests.interrupt_safe")
    logger.propagate = False
    logger.addHandler(handler)
    aborted = 0
    try:
        for _ in range(300):
            started = threading.Event()

            def log_forever(started: threading.Event = started) -> None:
                nonlocal aborted
                try:
                    started.set()
                    while True:
                        logger.warning("busy")
                except Abort:
                    aborted += 1

            thread = threading.Thread(target=log_forever)
            thread.start()
            started.wait()
            abort_thread(thread)
            thread.join(timeout=5)
            assert not thread.is_alive()
            assert handler.lock.acquire(timeout=1), "an Abort left the handler's lock held"
            handler.lock.release()
    finally:
        logger.removeHandler(handler)
    assert aborted == 300
