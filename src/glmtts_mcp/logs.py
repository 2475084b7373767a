"""Logging to stderr only: stdout belongs to the stdio MCP protocol."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable


class RepeatLimiter(logging.Filter):
    """Let a warning or error through once per `interval_s`, however often it repeats, and say how many
    were held back. A fault that repeats in a loop (asyncio's accept loop out of file descriptors
    logged 892,932 tracebacks in 2.5 minutes) must not fill the disk or drown every other line.

    Records are alike when they come from the same logger, level and message template (`record.msg`
    before its arguments are filled in): "%d connections open" is one fault however many are open."""

    def __init__(self, interval_s: float = 30.0, clock: Callable[[], float] = time.monotonic, max_keys: int = 1000):
        super().__init__()
        self.interval_s = interval_s
        self.clock = clock
        self.max_keys = max_keys
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        last, held_back = self._seen.get(key, (None, 0))
        if last is not None and now - last < self.interval_s:
            self._seen[key] = (last, held_back + 1)
            return False
        if len(self._seen) >= self.max_keys:
            self._seen.clear()
        self._seen[key] = (now, 0)
        if held_back and last is not None:  # held back implies seen before
            record.msg = f"{record.getMessage()} [{held_back} more like this in the last {now - last:.0f} s not logged]"
            record.args = None
        return True


def configure_logging(level: str | int = "INFO") -> None:
    """Send every log record to stderr; never touch stdout. Repeated warnings and errors are rate-limited."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RepeatLimiter())
    root.addHandler(handler)
    root.setLevel(level)
