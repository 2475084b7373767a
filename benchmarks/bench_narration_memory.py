"""Peak memory of `glmtts-mcp say` against the length of what it narrates.

Each row runs the command in a fresh process (so each peak is its own) on the same voice, with the text
repeated to lengthen the narration, and prints the process's peak resident memory beside the seconds of
audio written. A narration written to a file as it is made keeps the peak flat as the audio grows.

    .venv/bin/python benchmarks/bench_narration_memory.py                      # tiny checkpoint, CPU
    .venv/bin/python benchmarks/bench_narration_memory.py --checkpoint DIR --repeats 1 10 100
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
SENTENCE = "Hello there, this is one sentence of a longer story that goes on for a while. "

# Runs the CLI in this process, then reports the process's own peak RSS: the kernel's VmHWM, which starts
# afresh at exec (ru_maxrss may carry the parent's peak across fork and exec).
_CHILD = """
import json, sys
from glmtts_mcp.cli import main
status = main(sys.argv[1:])
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"status": status, "peak_kib": peak}), file=sys.stderr)
"""


def peak_kib(args: list[str]) -> int:
    """Peak RSS in KiB of one `glmtts-mcp` run (bench_script_memory.py uses it too)."""
    done = subprocess.run([sys.executable, "-c", _CHILD, *args], capture_output=True, text=True, cwd=ROOT)
    report = json.loads(done.stderr.strip().splitlines()[-1])
    if report["status"] != 0:
        raise SystemExit(done.stderr[-3000:])
    return int(report["peak_kib"])


def scratch_flags(checkpoint: Path | None, folder: Path) -> list[str]:
    """The flags of a run in `folder` (its own library and outputs) on `checkpoint`, or on a tiny random one
    made there."""
    if checkpoint is None:
        checkpoint = folder / "checkpoint"
        subprocess.run(
            [sys.executable, "-m", "glmtts_mcp", "checkpoint", "make-tiny", str(checkpoint)], check=True, cwd=ROOT
        )
        return [*scratch_flags(checkpoint, folder), "--whisper-model", "tiny-random"]
    return ["--checkpoint", str(checkpoint), "--voices-dir", str(folder / "voices"), "--output-dir", str(folder)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="checkpoint folder (default: a tiny random one, made here)")
    parser.add_argument("--repeats", type=int, nargs="+", default=[1, 10, 40], help="times the sentence is repeated")
    parser.add_argument("--format", default="wav", help="output format (wav, flac, ogg, mp3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="glmtts-bench-memory-") as scratch:
        folder = Path(scratch)
        common = scratch_flags(args.checkpoint, folder)
        reference = ROOT / "examples" / "reference.flac"
        transcript = "The quick brown fox jumps over the lazy dog."
        first = folder / "clone.wav"
        peak_kib(["say", "Hi.", "--reference", str(reference), "--transcript", transcript, "-o", str(first), *common])
        voice = ["--reference", str(reference), "--transcript", transcript]  # the stored voice: no new clone
        print(f"{'characters':>10}  {'audio s':>8}  {'peak RSS MiB':>12}")
        for repeat in args.repeats:
            text = SENTENCE * repeat
            out = folder / f"narration-{repeat}.{args.format}"
            peak = peak_kib(["say", text, *voice, "-o", str(out), *common])
            seconds = sf.info(str(out)).duration
            print(f"{len(text):>10}  {seconds:>8.1f}  {peak / 1024:>12.1f}")


if __name__ == "__main__":
    main()
