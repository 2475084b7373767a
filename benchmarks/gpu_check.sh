#!/usr/bin/env bash
# The checks that need a CUDA device, in one command, under ten minutes on one GPU:
#   1. the CUDA-only tests (mel, vocoder, CUDA-graph LLM steps alone and batched, the device voice tier);
#   2. bench_engine.py on a random checkpoint of the real size, LLM in bf16 and in fp32;
#   3. bench_concurrency.py on the same checkpoint: N = 1, 2, 4, 8 narrations, batched vs serial, bf16 and fp32;
#   4. bench_first_audio.py on the same checkpoint, LLM in bf16: time to first audio, offline vs stream mode
#      (first chunk with the batch held and side by side);
#   5. bench_stream_stall.py: the decode time other narrations' flow and vocoder jobs add, offline vs stream mode.
# Usage: bash benchmarks/gpu_check.sh [CHECKPOINT_DIR]   (default /tmp/glmtts-real; written if missing, 8.6 GB)
# Every table goes to stdout; a failing step is reported and the others still run; the exit status says
# whether all passed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
CKPT=${1:-/tmp/glmtts-real}
failed=0

step() {  # step NAME SECONDS COMMAND...: run with a time limit, say how it went
    local name=$1 limit=$2
    shift 2
    echo "=== $name (limit ${limit} s)"
    local began=$SECONDS
    if timeout "$limit" "$@"; then
        echo "=== $name: ok in $((SECONDS - began)) s"
    else
        echo "=== $name: FAILED (exit $?) after $((SECONDS - began)) s"
        failed=1
    fi
}

"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA device: run this on a GPU machine")' || exit 2
"$PY" -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0))'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
if [ ! -f "$CKPT/llm/config.json" ]; then
    step "make the real-size random checkpoint" 240 "$(dirname "$PY")/glmtts-mcp" checkpoint make-tiny "$CKPT" --size real
fi
step "CUDA-only tests" 150 "$PY" -m pytest tests/engine tests/voices -q -p no:cacheprovider -k cuda -rs
for dtype in bf16 fp32; do
    step "bench_engine $dtype" 90 "$PY" benchmarks/bench_engine.py --checkpoint "$CKPT" --device cuda --dtype "$dtype" \
        --no-whisper
    step "bench_concurrency $dtype" 150 "$PY" benchmarks/bench_concurrency.py --checkpoint "$CKPT" --device cuda \
        --dtype "$dtype" --n 1 2 4 8 --tokens 150 --flow-batch
done
step "bench_first_audio bf16" 150 "$PY" benchmarks/bench_first_audio.py --checkpoint "$CKPT" --device cuda \
    --dtype bf16 --n 1 8 --no-fidelity --side-by-side
step "bench_stream_stall bf16" 90 "$PY" benchmarks/bench_stream_stall.py --checkpoint "$CKPT" --device cuda \
    --dtype bf16 --n 3
exit $failed
