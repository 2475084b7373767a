"""The web faces beside the MCP face: a REST API, an OpenAI-compatible speech endpoint and a page.

They serve the same `App` (settings, engine host, voice library, output store) on the same port as
`/mcp` or `/sse`; `include_web` adds their routes to the root app that asgi/ composes.
"""

from glmtts_mcp.web.site import include_web

__all__ = ["include_web"]
