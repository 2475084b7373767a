"""Failures as HTTP answers: a user error in REST words (fields, methods and paths), its status from its kind.

REST bodies are `{"error": sentence, "field": name-or-null, "status": code}`; the OpenAI-compatible
paths answer in OpenAI's shape (`{"error": {"message", "type", "param", "code"}}`) so its clients
raise their own exception with the sentence. No answer names the server's folders by their absolute
path (an HTTP client has no business knowing where the library lives): `FolderNames` puts each one's
role in its place, and a file-system error says what failed, not where.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from glmtts_mcp.app.engine_host import ServerBusy
from glmtts_mcp.errors import Kind, Term, UserError, Words

log = logging.getLogger(__name__)

OPENAI_PREFIX = "/v1/"
CLIENT_CLOSED_REQUEST = 499  # the status proxies log for a client that left before its answer


class ClientGone(Exception):
    """The HTTP client closed its connection before the first byte of its answer: its work was stopped."""


class WebError(Exception):
    """A refusal decided at the web edge: status, sentence (problem and fix) and the field at fault."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


STATUS: dict[Kind, int] = {
    Kind.INVALID: 400,
    Kind.NOT_FOUND: 404,
    Kind.CONFLICT: 409,
    Kind.TOO_LARGE: 413,
    Kind.UNSUPPORTED_MEDIA: 415,
    Kind.UNAVAILABLE: 503,
    Kind.ENVIRONMENT: 500,
}

# Request fields named otherwise than the term (routes that differ pass their own, as OpenAI's `input`).
_FIELDS: dict[Term, str] = {Term.REFERENCE: "audio", Term.DESTINATION: "path"}
_ACTIONS: dict[Term, str] = {
    Term.LIST_VOICES: "GET /api/voices",
    Term.CLONE_VOICE: "POST /api/voices",
    Term.EXPORT_VOICE: "GET /api/voices/{voice}/export",
    Term.IMPORT_VOICE: "POST /api/voices/import",
    Term.RENAME_VOICE: "PATCH /api/voices/{voice}",
}
_SETTINGS: dict[Term, str] = {
    Term.MAX_TEXT_CHARS: "the server's --max-text-chars setting",
    Term.MAX_SCRIPT_CHARS: "the server's --max-script-chars setting",
}


def field_name(term: Term, overrides: Mapping[Term, str] | None = None) -> str:
    """The request field that carries `term`."""
    return {**_FIELDS, **(overrides or {})}.get(term, term.value)


def rest_words(overrides: Mapping[Term, str] | None = None) -> Words:
    """This face's vocabulary: fields for inputs, method and path for actions."""

    def words(term: Term) -> str:
        if term in _ACTIONS:
            return _ACTIONS[term]
        if term in _SETTINGS:
            return _SETTINGS[term]
        return f"field `{field_name(term, overrides)}`"

    return words


# OpenAI's request names the text `input` and the format `response_format`.
OPENAI_FIELDS: dict[Term, str] = {Term.TEXT: "input", Term.FORMAT: "response_format"}


def _fields_for(path: str) -> Mapping[Term, str] | None:
    return OPENAI_FIELDS if path.startswith(OPENAI_PREFIX) else None


def error_body(path: str, status: int, message: str, field: str | None = None) -> dict[str, Any]:
    """The JSON body of an error, in OpenAI's shape under /v1/ and in ours elsewhere."""
    if path.startswith(OPENAI_PREFIX):
        kind = "server_error" if status >= 500 else "invalid_request_error"
        code = {401: "invalid_api_key", 404: "voice_not_found", 503: "model_unavailable"}.get(status)
        return {"error": {"message": message, "type": kind, "param": field, "code": code}}
    return {"error": message, "field": field, "status": status}


def error_response(path: str, status: int, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(path, status, message, field), status_code=status)


class FolderNames:
    """The server's folders as an HTTP client may see them: by their role ("the voice library"), never by
    their absolute path, in whichever form (as configured or resolved) a message holds it."""

    def __init__(self, folders: Mapping[str, Path]) -> None:
        forms = {(str(form), role) for role, folder in folders.items() for form in (folder, folder.resolve())}
        self._forms = sorted(forms, key=lambda pair: len(pair[0]), reverse=True)  # the deepest folder first

    def hide(self, message: str) -> str:
        for form, role in self._forms:
            if len(form) > 1:  # never the root folder "/"
                message = message.replace(form, role)
        return message


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


def install_error_handlers(api: FastAPI, folders: FolderNames) -> None:
    """Refusals keep their sentence and status (the server's folders named by role); a bug is logged and
    answered with a 500 sentence."""

    @api.exception_handler(WebError)
    async def web_error(request: Request, exc: WebError) -> JSONResponse:
        return error_response(request.url.path, exc.status, folders.hide(exc.message), exc.field)

    @api.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError) -> JSONResponse:
        fields = _fields_for(request.url.path)
        field = field_name(exc.argument, fields) if exc.argument is not None else None
        message = folders.hide(exc.render(rest_words(fields)))
        response = error_response(request.url.path, STATUS[exc.kind], message, field)
        if isinstance(exc, ServerBusy):
            response.headers["retry-after"] = str(exc.retry_after_s)
        return response

    @api.exception_handler(ClientGone)
    async def client_gone(request: Request, exc: ClientGone) -> Response:
        log.info("%s %s: %s", request.method, request.url.path, exc)
        return Response(status_code=CLIENT_CLOSED_REQUEST)  # nobody reads it: the connection is closed

    @api.exception_handler(OSError)
    async def file_system_error(request: Request, exc: OSError) -> JSONResponse:
        log.error("file system error on %s %s", request.method, request.url.path, exc_info=exc)
        reason = exc.strerror or type(exc).__name__  # what failed, never the file's path
        return error_response(request.url.path, 500, f"file system error ({reason}): see the server log")

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
