"""glmtts-mcp: clone a voice once, narrate in it forever, over MCP."""

__version__ = "0.1.0"
