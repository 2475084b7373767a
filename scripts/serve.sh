#!/usr/bin/env bash
# Set up .venv on first use, then run the MCP server (stdio by default; pass `serve --transport http` etc.).
set -euo pipefail
exec "$(dirname "$0")/glmtts-mcp" "$@"
