"""The web faces beside the MCP face: a REST API, an OpenAI-compatible speech endpoint and a page.

They serve the same `App` (settings, engine host, voice library, output store) on the same port as
`/mcp` or `/sse`; `web_face(app)` is the hook `mcp_face.server.http_service` takes.
"""

from glmtts_mcp.web.site import web_face

__all__ = ["web_face"]
