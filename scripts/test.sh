#!/usr/bin/env bash
# Set up .venv on first use, then run the whole test suite (parity cases included).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/scripts/setup-venv.sh"
cd "$root"
exec "$root/.venv/bin/python" -m pytest "$@"
