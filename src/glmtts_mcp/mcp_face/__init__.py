"""The MCP face: typed tools, resources, return modes and progress over the application core (app/)."""
