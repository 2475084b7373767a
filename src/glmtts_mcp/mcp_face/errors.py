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
from pydantic import ValidationError
from pydantic_core import ErrorDetails

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


def describe_invalid_arguments(tool: str, exc: ValidationError) -> str:
    """Arguments that fail a tool's input schema, as one problem-and-fix sentence per argument
    (pydantic's own text carries a documentation URL and the whole rejected value)."""
    problems = [_describe_argument_error(err) for err in exc.errors(include_url=False)]
    return f"invalid arguments for {tool}: {'; '.join(problems)}"


def _describe_argument_error(err: ErrorDetails) -> str:
    arg = f"argument `{'.'.join(str(part) for part in err['loc']) or '?'}`"
    kind, ctx, given = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "missing":
        return f"{arg} is missing: pass it"
    if kind == "extra_forbidden":
        return f"{arg} is not an argument of this tool: drop it (the tool's input schema lists the arguments)"
    if kind == "string_too_short":
        if not given:
            return f"{arg} is empty: pass at least {ctx.get('min_length', 1)} character(s)"
        return f"{arg} has {len(given)} characters: pass at least {ctx.get('min_length')}"
    if kind == "string_too_long":
        return f"{arg} has {len(given)} characters; the limit is {ctx.get('max_length')}: pass a shorter one"
    if kind in _BOUNDS:
        relation, key = _BOUNDS[kind]
        return f"{arg} is {_short(given)}; it must be {relation} {ctx.get(key)}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"{arg} must be a whole number, not {_short(given)}"
    if kind in ("string_type", "string_unicode"):
        return f"{arg} must be text, not {type(given).__name__}"
    return f"{arg}: {err['msg']} (got {_short(given)})"


_BOUNDS = {
    "greater_than_equal": ("at least", "ge"),
    "less_than_equal": ("at most", "le"),
    "greater_than": ("more than", "gt"),
    "less_than": ("less than", "lt"),
}


def _short(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
