#!/usr/bin/env bash
# Set up .venv on first use, then run the MCP server (stdio by default; pass `serve --transport http` etc.).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/scripts/setup-venv.sh"
exec "$root/.venv/bin/glmtts-mcp" "$@"
