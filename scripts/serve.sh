#!/usr/bin/env bash
# Set up .venv on first use (the runtime set, plus the extras in GLMTTS_MCP_EXTRAS), then run the MCP
# server (stdio by default; pass `serve --transport http` etc.).
set -euo pipefail
exec "$(dirname "$0")/glmtts-mcp" "$@"
