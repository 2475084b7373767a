"""Logs go to stderr, and one fault repeating in a loop cannot flood them."""

from __future__ import annotations

import io
import logging

from glmtts_mcp.logs import RepeatLimiter


def test_a_repeating_error_is_logged_once_per_interval_with_a_count() -> None:
    now = [0.0]
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RepeatLimiter(interval_s=30, clock=lambda: now[0]))
    logger = logging.getLogger("test.repeat")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        for _ in range(10_000):  # asyncio's accept loop when the process is out of descriptors
            logger.error("socket.accept() out of system resource", exc_info=OSError(24, "Too many open files"))
        logger.error("another fault")
        logger.info("progress %d", 1)
        logger.info("progress %d", 1)  # INFO is never held back
        now[0] = 31.0
        logger.error("socket.accept() out of system resource")
    finally:
        logger.removeHandler(handler)
    lines = [line for line in stream.getvalue().splitlines() if not line.startswith(("Traceback", "OSError"))]
    assert lines == [
        "socket.accept() out of system resource",
        "another fault",
        "progress 1",
        "progress 1",
        "socket.accept() out of system resource [9999 more like this in the last 31 s not logged]",
    ]
    assert stream.getvalue().count("Too many open files") == 1
