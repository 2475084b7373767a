"""The one HTTP composition: an ASGI root app that serves MCP's HTTP transport and the web faces behind
one gate (Host, Origin, token or session, body cap), under uvicorn with bounded connections."""
