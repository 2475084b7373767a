"""Logs go to stderr, and one fault repeating in a loop cannot flood them."""

from __future__ import annotations

import io
import logging

from glmtts_mcp.logs import RepeatLimiter


def limited(name: str, now: list[float]) -> tuple[logging.Logger, logging.Handler, io.StringIO]:
    """A logger writing through a RepeatLimiter of 30 s whose clock reads `now[0]`."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RepeatLimiter(interval_s=30, clock=lambda: now[0]))
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, handler, stream


def test_a_repeating_error_is_logged_once_per_interval_with_a_count() -> None:
    now = [0.0]
    logger, handler, stream = limited("test.repeat", now)
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


def test_records_with_one_template_are_alike_whatever_their_arguments() -> None:
    """The connection cap's warning names the count: 200 of them, each with another number, are one line
    per interval, not one per number."""
    now = [0.0]
    logger, handler, stream = limited("test.template", now)
    try:
        for open_now in range(100, 300):
            logger.warning("%d connections open, over the cap of %d", open_now, 100)
        logger.warning("%s failed", "something else")
        now[0] = 31.0
        logger.warning("%d connections open, over the cap of %d", 301, 100)
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue().splitlines() == [
        "100 connections open, over the cap of 100",
        "something else failed",
        "301 connections open, over the cap of 100 [199 more like this in the last 31 s not logged]",
    ]
