#!/usr/bin/env bash
# Set up .venv on first use with the `test` extra (pytest, onnx for the tiny checkpoint, ray, the OpenAI
# client, playwright), then run pytest with the given arguments: none runs the whole suite (parity cases
# included), `-m "not slow"` the fast lane.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/scripts/setup-venv.sh" test
cd "$root"
exec "$root/.venv/bin/python" -m pytest "$@"
