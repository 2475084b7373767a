"""The one cap on request bodies: 4 MiB on the MCP paths, the upload limit (plus multipart framing)
elsewhere; checked on the declared length and counted while a body without one streams in."""

from __future__ import annotations

import json

from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from glmtts_mcp.asgi.mcp_mount import MCP_BODY_BYTES, is_mcp_path
from glmtts_mcp.web.errors import error_body

MULTIPART_ROOM = 64 * 1024  # form fields and boundaries around an upload

MCP_OVERSIZE = (
    f"the request is larger than the {MCP_BODY_BYTES // 1024 // 1024} MiB an HTTP request may carry: "
    "split long text into several synthesize calls, and pass large audio as a file path inside the allowed "
    "folders instead of base64"
)


def _mcp_too_large() -> Response:
    """A JSON-RPC error: MCP clients show its message, and only a generic failure for a text body."""
    body = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": MCP_OVERSIZE}}
    return Response(json.dumps(body), status_code=413, media_type="application/json")


class BodyCap:
    """ASGI middleware: 413 once a body passes its path's cap; the app is told the client left."""

    def __init__(self, app: ASGIApp, max_upload_bytes: int) -> None:
        self.app = app
        self.max_upload_bytes = max_upload_bytes

    def _cap(self, path: str) -> tuple[int, Response]:
        if is_mcp_path(path):
            return MCP_BODY_BYTES, _mcp_too_large()
        message = (
            f"the request body is larger than the {self.max_upload_bytes}-byte upload limit: send a shorter clip "
            "(5-15 s of speech is enough), or raise --max-upload-bytes"
        )
        return self.max_upload_bytes + MULTIPART_ROOM, JSONResponse(error_body(path, 413, message), status_code=413)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, too_large = self._cap(scope["path"])
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await too_large(scope, receive, send)
            return
        received = 0
        refused = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit and not started:
                    refused = True
                    await too_large(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 went out already: the app's own answer is dropped
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except Exception:
            if not refused:
                raise
