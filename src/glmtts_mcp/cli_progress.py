"""Progress on stderr for the command line: a bar redrawn in place in a terminal, plain lines elsewhere.

A host's log, a pipe or a CI log keeps every byte written, so a bar's carriage-return redraws would
pile up there as one long unreadable line; off a terminal each step is written once, as its own line.
"""

from __future__ import annotations

import sys
from typing import TextIO


class StepProgress:
    """`progress(done, total, message)` for `glmtts-mcp say`; `close()` when the work ends."""

    def __init__(self, first: str, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._last: str | None = None
        self._bar = None
        if self._stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=1, desc=first, file=self._stream, unit="step", leave=True)
        else:
            self._line(first)

    def __call__(self, done: float, total: float, message: str) -> None:
        if self._bar is None:
            self._line(message)
            return
        self._bar.total = max(total or 1, done)
        self._bar.n = done
        self._bar.set_description(message[:60])
        self._bar.refresh()

    def _line(self, message: str) -> None:
        """One line per new message: a repeated one (a heartbeat) would only add noise to a log."""
        if message != self._last:
            self._last = message
            print(f"glmtts-mcp: {message}", file=self._stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
