"""Which failures a user can act on, and what everything else becomes.

User mistakes are raised as EngineError, VoiceLibraryError or ToolError with a message that names the
problem and the fix; those pass to the user as they are. Anything else (a ValueError from a shape
check, an OSError nobody expected) is a bug or an environment failure: it is logged with its traceback
and the user gets one line saying it is internal, never a contract message dressed as advice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from mcp.server.mcpserver.exceptions import ToolError

from glmtts_mcp.engine.types import EngineError
from glmtts_mcp.voices import VoiceLibraryError

log = logging.getLogger(__name__)

# Failures whose message already names the problem and the fix.
USER_ERRORS: tuple[type[Exception], ...] = (EngineError, VoiceLibraryError, ToolError)


def internal_error(exc: BaseException) -> str:
    """Log `exc` with its traceback (stderr) and return the one line the user sees instead."""
    log.error("internal error: %s: %s", type(exc).__name__, exc, exc_info=exc)
    return (
        f"internal error ({type(exc).__name__}: {exc}); this is not something you did wrong: "
        "the server log has the details, please report it"
    )


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn failures into ToolError: user mistakes with their own message, anything else as internal."""
    try:
        yield
    except ToolError:
        raise
    except USER_ERRORS as exc:
        raise ToolError(str(exc) or type(exc).__name__) from exc
    except Exception as exc:
        raise ToolError(internal_error(exc)) from exc
