"""The JSON handler's short way for our usual lines writes what structlog's formatter would."""

from __future__ import annotations

import io
import json
import logging

import structlog
from structlog.tracebacks import ExceptionDictTransformer

from middleware.log_format import SHARED, handler_for


def test_a_line_of_ours_is_rendered_as_the_processor_formatter_renders_it():
    ours, theirs = io.StringIO(), io.StringIO()
    reference = logging.StreamHandler(theirs)
    reference.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=SHARED,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    logger = logging.getLogger("tests.log_format")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.handlers = [handler_for("json", ours), reference]
    try:
        log = structlog.get_logger("tests.log_format").bind(job_id="j-1", write="awaited")
        log.info("job_completed", attempt=2, duration_ms=3, arguments=["delay_ms"], status=None)
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("job_failed")  # the long way: an exception
    finally:
        logger.handlers.clear()
    mine, reference_lines = ours.getvalue().splitlines(), theirs.getvalue().splitlines()
    assert len(mine) == len(reference_lines) == 2
    assert json.loads(mine[0]) == json.loads(reference_lines[0])
    assert json.loads(mine[0])["event"] == "job_completed" and json.loads(mine[0])["attempt"] == 2
    assert json.loads(mine[1])["exception"][0]["exc_value"] == "boom"
