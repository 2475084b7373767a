#!/usr/bin/env bash
# Create .venv beside the project and install glmtts-mcp into it with the pinned constraints.
# Idempotent: reinstalls only when pyproject.toml or constraints.txt changed. Says what it does on
# stderr, one line per phase; pip's own output goes to .venv/pip-install.log (its tail is shown if pip fails).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv"
stamp="$venv/.glmtts-mcp-installed"
want="$(cat "$root/pyproject.toml" "$root/constraints.txt" | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
say() { echo "glmtts-mcp setup: $*" >&2; }
if [ ! -x "$venv/bin/python" ]; then
  say "creating the virtual environment $venv"
  python3 -m venv "$venv" >&2
fi
log="$venv/pip-install.log"
say "installing glmtts-mcp and its pinned dependencies (torch, openai-whisper, the MCP SDK, ...) into .venv;"
say "a first install downloads several GB and can take minutes (pip's log: $log)"
if ! "$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off \
    -c "$root/constraints.txt" -e "$root[test]" >"$log" 2>&1; then
  say "pip failed; the end of $log:"
  tail -n 25 "$log" >&2
  exit 1
fi
installed="$(grep '^Successfully installed' "$log" | wc -w)"
say "done: $(( installed > 2 ? installed - 2 : 0 )) packages installed or updated"
echo "$want" > "$stamp"
