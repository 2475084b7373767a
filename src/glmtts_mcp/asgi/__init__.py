"""The one HTTP composition: an ASGI root that serves MCP's transports and the web faces behind one guard."""
