"""Progress at the shell: a redrawn bar on a terminal, plain lines anywhere else (a host's log, a pipe),
where redraws would interleave with the log lines."""

from __future__ import annotations

import sys
import threading
from typing import TextIO


class ProgressDisplay:
    """Callable as the engine's `progress(done, total, message)` from any thread; `close()` when done."""

    def __init__(self, first: str, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._lock = threading.Lock()
        self._last = ""
        self._bar = None
        if self._stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=1, desc=first, file=self._stream, unit="step", leave=True)
        else:
            self._line(first)

    def __call__(self, done: float, total: float, message: str) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.total = max(total or 1, done)
                self._bar.n = done
                self._bar.set_description(message[:60])
                self._bar.refresh()
            elif message != self._last:
                self._line(f"{message} ({done:g}/{total:g})" if total else message)
                self._last = message

    def _line(self, text: str) -> None:
        print(f"glmtts-mcp: {text}", file=self._stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def progress_display(first: str) -> ProgressDisplay:
    """Progress for a command that runs a while, starting with the message `first`."""
    return ProgressDisplay(first)
