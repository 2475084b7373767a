"""Failures as MCP tool errors, in the words of the tools.

A `UserError` (from the library, the engine or the application core) is rendered with this face's
vocabulary: its inputs are tool arguments in backticks, its actions are tools to call. Anything else
(a ValueError from a shape check, an OSError nobody expected) is a bug or an environment failure: it is
logged with its traceback and the user gets one line saying it is internal, never a contract message
dressed as advice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from glmtts_mcp.errors import Term, UserError, Words, internal_error, is_action

log = logging.getLogger(__name__)

# Inputs whose tool argument is not named like the term (tools that differ pass their own overrides).
_ARGUMENTS: dict[Term, str] = {Term.REFERENCE: "reference_audio", Term.DESTINATION: "path", Term.ARCHIVE: "path"}
_SETTINGS: dict[Term, str] = {
    Term.MAX_TEXT_CHARS: "the server's --max-text-chars setting",
    Term.MAX_SCRIPT_CHARS: "the server's --max-script-chars setting",
}


def tool_words(overrides: Mapping[Term, str] | None = None) -> Words:
    """This face's vocabulary: `argument` for inputs, "call tool" for actions; `overrides` renames inputs
    for a tool whose argument is called otherwise (clone_voice's clip is `audio`)."""
    names = {**_ARGUMENTS, **(overrides or {})}

    def words(term: Term) -> str:
        if is_action(term):
            return f"call {term.value}"
        if term in _SETTINGS:
            return _SETTINGS[term]
        return f"`{names.get(term, term.value)}`"

    return words


@contextmanager
def user_errors(overrides: Mapping[Term, str] | None = None) -> Iterator[None]:
    """Turn failures into ToolError: user mistakes in this tool's words, anything else as internal."""
    try:
        yield
    except ToolError:
        raise
    except UserError as exc:
        raise ToolError(exc.render(tool_words(overrides))) from exc
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
