"""Every failure a user can act on becomes a tool error with its own message (isError), never a crash."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mcp.server.mcpserver.exceptions import ToolError

from glmtts_mcp.engine.types import EngineError
from glmtts_mcp.voices import VoiceLibraryError

# Failures whose message already names the problem and the fix.
USER_ERRORS: tuple[type[Exception], ...] = (EngineError, VoiceLibraryError, ValueError)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn known failures into ToolError (logged in one line by the SDK, not as a crash)."""
    try:
        yield
    except ToolError:
        raise
    except USER_ERRORS as exc:
        raise ToolError(str(exc) or type(exc).__name__) from exc
    except OSError as exc:
        raise ToolError(f"file system error: {exc}") from exc
