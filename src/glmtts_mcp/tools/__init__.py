"""The MCP face of glmtts-mcp: typed tools, resources, return modes, progress, path confinement, HTTP security.

server.py builds the MCPServer from an App (app.py: settings, engine host, voice library, output store);
voice_tools.py, synthesis.py and stats.py hold the tools, resources.py the voice:// and audio:// resources.
Imports go one way: tools -> voices, engine.
"""
