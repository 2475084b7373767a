#!/usr/bin/env bash
# Create .venv beside the project and install glmtts-mcp into it with the pinned constraints:
# the runtime set, plus the extras named as arguments (`setup-venv.sh test`) or in GLMTTS_MCP_EXTRAS
# (comma- or space-separated, e.g. GLMTTS_MCP_EXTRAS=ray).
# Idempotent: the stamp records the hash of pyproject.toml + constraints.txt and the extras installed;
# pip runs again only when those files changed or an extra is asked for that is not installed yet
# (it then installs the extras already there too, so serving and testing never undo each other).
# Says what it does on stderr, one line per phase; pip's own output goes to .venv/pip-install.log
# (its tail is shown if pip fails).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv"
stamp="$venv/.glmtts-mcp-installed"
say() { echo "glmtts-mcp setup: $*" >&2; }
digest="$(cat "$root/pyproject.toml" "$root/constraints.txt" | sha256sum | cut -d' ' -f1)"
wanted="$(printf '%s\n' "$@" ${GLMTTS_MCP_EXTRAS:+${GLMTTS_MCP_EXTRAS//,/ }} | sed '/^$/d' | sort -u)"
if grep -qv '^[A-Za-z0-9_-]*$' <<<"$wanted"; then
  say "extras are names like ray or test, separated by commas or spaces; got: $(echo $wanted)"
  exit 2
fi
installed=""
if [ -f "$stamp" ] && [ "$(head -n 1 "$stamp")" = "$digest" ]; then
  installed="$(tail -n +2 "$stamp" | sed '/^$/d' | sort -u)"
  if [ -z "$(comm -23 <(echo "$wanted") <(echo "$installed") | sed '/^$/d')" ]; then exit 0; fi
fi
extras="$(printf '%s\n' $wanted $installed | sed '/^$/d' | sort -u)"
spec="$root"
if [ -n "$extras" ]; then spec="$root[$(echo $extras | tr ' ' ',')]"; fi
if [ ! -x "$venv/bin/python" ]; then
  say "creating the virtual environment $venv"
  python3 -m venv "$venv" >&2
fi
log="$venv/pip-install.log"
say "installing glmtts-mcp and its pinned dependencies (torch, openai-whisper, the MCP SDK, ...) into .venv," \
  "extras: $(echo ${extras:-none})"
say "a first install downloads several GB and can take minutes (pip's log: $log)"
if ! "$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off \
    -c "$root/constraints.txt" -e "$spec" >"$log" 2>&1; then
  say "pip failed; the end of $log:"
  tail -n 25 "$log" >&2
  exit 1
fi
count="$(grep '^Successfully installed' "$log" | wc -w)"
say "done: $(( count > 2 ? count - 2 : 0 )) packages installed or updated"
printf '%s\n' "$digest" $extras > "$stamp"
