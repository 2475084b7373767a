"""Lines of stdin for the stdio transport, read by a daemon thread so that Ctrl-C is never stuck.

The SDK reads stdin through an anyio worker thread, and a blocked read cannot be abandoned: the
server waited for the next line before it could stop. A daemon thread reading the raw descriptor
(os.read, so no buffer lock is held at interpreter exit) hands lines to the event loop instead; on
cancellation the loop simply stops listening and the process exits.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import AsyncIterator

import anyio
import anyio.from_thread
from anyio.lowlevel import current_token

_CHUNK = 1 << 16


class StdinLines:
    """An async iterable of decoded lines from a file descriptor (stdin by default), newline kept."""

    def __init__(self, fd: int = 0) -> None:
        self.fd = fd

    def __aiter__(self) -> AsyncIterator[str]:
        return self._lines()

    async def _lines(self) -> AsyncIterator[str]:
        send, receive = anyio.create_memory_object_stream[str](16)
        token = current_token()

        def deliver(line: bytes) -> None:
            anyio.from_thread.run(send.send, line.decode("utf-8", errors="replace"), token=token)

        def pump() -> None:
            buffer = bytearray()
            try:
                while chunk := os.read(self.fd, _CHUNK):
                    searched = len(buffer)
                    buffer += chunk
                    while (end := buffer.find(b"\n", searched)) >= 0:
                        deliver(bytes(buffer[: end + 1]))
                        del buffer[: end + 1]
                        searched = 0
                if buffer:
                    deliver(bytes(buffer))
            except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.RunFinishedError):
                pass  # the descriptor closed, or the server stopped listening
            finally:
                with contextlib.suppress(anyio.RunFinishedError):
                    anyio.from_thread.run_sync(send.close, token=token)

        threading.Thread(target=pump, name="glmtts-mcp stdin", daemon=True).start()
        async with receive:
            async for line in receive:
                yield line
