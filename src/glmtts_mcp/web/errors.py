"""Failures as HTTP answers: the same sentence the MCP tools give, with an honest status code.

REST bodies are `{"error": sentence, "field": name-or-null, "status": code}`; the OpenAI-compatible
paths answer in OpenAI's shape (`{"error": {"message", "type", "param", "code"}}`) so its clients
raise their own exception with the sentence.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from mcp.server.mcpserver.exceptions import ToolError
from starlette.exceptions import HTTPException as StarletteHTTPException

from glmtts_mcp.engine.types import EngineError, NotAudioError
from glmtts_mcp.app.engine_host import EngineUnavailable
from glmtts_mcp.mcp_face.errors import USER_ERRORS
from glmtts_mcp.voices import VoiceLibraryError
from glmtts_mcp.voices.errors import (
    ArchiveError,
    BrokenVoice,
    InvalidVoiceName,
    StaleVoice,
    VoiceExists,
    VoiceNotFound,
)

log = logging.getLogger(__name__)

OPENAI_PREFIX = "/v1/"


class WebError(Exception):
    """A refusal decided at the web edge: status, sentence (problem and fix) and the field at fault."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


# Most specific first: the first class that matches decides the status.
_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (EngineUnavailable, 503),
    (NotAudioError, 415),
    (EngineError, 400),
    (VoiceNotFound, 404),
    (VoiceExists, 409),
    (BrokenVoice, 409),
    (StaleVoice, 409),
    (InvalidVoiceName, 400),
    (ArchiveError, 400),
    (VoiceLibraryError, 400),
    (ToolError, 400),  # the clone inputs checked once for every face (language, transcript length)
)


def status_for(exc: Exception) -> int:
    """The HTTP status of a failure the tools report as a user error (500 for anything else)."""
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500


# The library and engine name the MCP tools in their advice; over HTTP the same advice names paths.
_REST_WORDS = (
    ("Call list_voices to see the stored voices", "GET /api/voices lists the stored voices"),
    ("as shown by list_voices", "as GET /api/voices shows it"),
    ("list_voices", "GET /api/voices"),
    ("clone_voice", "POST /api/voices"),
    ("export_voice", "GET /api/voices/{voice}/export"),
    ("import_voice", "POST /api/voices/import"),
)


def rest_wording(message: str) -> str:
    """A library or engine sentence with the MCP tool names replaced by the REST paths that do the same."""
    for tool_words, rest_words in _REST_WORDS:
        message = message.replace(tool_words, rest_words)
    return message


@contextmanager
def web_errors(field: str | None = None, fields: tuple[str, ...] = ()) -> Iterator[None]:
    """Known failures (the tools' user errors) become WebError with their sentence and status.

    Bad input (400, 415) names a request field: the one among `fields` its sentence starts with (the
    tools' sentences open with the argument they are about), else `field` (the uploaded file, say)."""
    try:
        yield
    except WebError:
        raise
    except USER_ERRORS as exc:
        status = status_for(exc)
        message = rest_wording(str(exc) or type(exc).__name__)
        named = next((f for f in fields if message.startswith(f"{f} ")), field)
        raise WebError(status, message, named if status in (400, 415) else None) from exc
    except OSError as exc:
        raise WebError(500, f"file system error: {exc}") from exc


def error_body(path: str, status: int, message: str, field: str | None = None) -> dict[str, Any]:
    """The JSON body of an error, in OpenAI's shape under /v1/ and in ours elsewhere."""
    if path.startswith(OPENAI_PREFIX):
        kind = "server_error" if status >= 500 else "invalid_request_error"
        code = {401: "invalid_api_key", 404: "voice_not_found", 503: "model_unavailable"}.get(status)
        return {"error": {"message": message, "type": kind, "param": field, "code": code}}
    return {"error": message, "field": field, "status": status}


def error_response(path: str, status: int, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(path, status, message, field), status_code=status)


def _validation_sentence(exc: RequestValidationError) -> tuple[str, str | None]:
    """The first validation problem as a sentence naming the field, and that field."""
    problems = []
    first_field = None
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "form")]
        field = ".".join(loc) or None
        first_field = first_field or field
        problems.append(f"field `{field}`: {err.get('msg')}" if field else str(err.get("msg")))
    return "; ".join(problems) + " (see /docs for the request's fields)", first_field


def install_error_handlers(api: FastAPI) -> None:
    """Refusals keep their sentence and status; a bug is logged and answered with a 500 sentence."""

    @api.exception_handler(WebError)
    async def web_error(request: Request, exc: WebError) -> JSONResponse:
        return error_response(request.url.path, exc.status, exc.message, exc.field)

    @api.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, field = _validation_sentence(exc)
        return error_response(request.url.path, 422, message, field)

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such path {request.url.path}: see /docs for the REST API and / for the page"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}: see /docs for the methods it takes"
        return error_response(request.url.path, exc.status_code, message)

    @api.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected failure on %s %s: %r", request.method, request.url.path, exc)
        return error_response(request.url.path, 500, f"internal error ({type(exc).__name__}): see the server log")
