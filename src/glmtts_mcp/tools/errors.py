"""Every failure a user can act on becomes a tool error with its own message (isError), never a crash."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import ValidationError
from pydantic_core import ErrorDetails

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
