"""Peak memory of `glmtts-mcp say --script` against the length of the script.

Each row runs the command in a fresh process (so each peak is its own) on a two-voice dialogue of N lines
and prints the process's peak resident memory (the kernel's VmHWM) beside the seconds of audio written.
A script narrated line by line, each line written before the next is made, keeps the peak flat as the
script grows: memory holds one line (measured for its loudness), never the script.

    .venv/bin/python benchmarks/bench_script_memory.py                      # tiny checkpoint, CPU
    .venv/bin/python benchmarks/bench_script_memory.py --checkpoint DIR --lines 5 50 200
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
LINES = ("Hello there, this is one sentence of a longer story that goes on for a while.", "And here is the answer.")

# Runs the CLI in this process, then reports the process's own peak RSS (VmHWM starts afresh at exec).
_CHILD = """
import json, sys
from glmtts_mcp.cli import main
status = main(sys.argv[1:])
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"status": status, "peak_kib": peak}), file=sys.stderr)
"""


def _cli(args: list[str]) -> int:
    """Peak RSS in KiB of one `glmtts-mcp` run."""
    done = subprocess.run([sys.executable, "-c", _CHILD, *args], capture_output=True, text=True, cwd=ROOT)
    report = json.loads(done.stderr.strip().splitlines()[-1])
    if report["status"] != 0:
        raise SystemExit(done.stderr[-3000:])
    return int(report["peak_kib"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="checkpoint folder (default: a tiny random one, made here)")
    parser.add_argument("--lines", type=int, nargs="+", default=[5, 20, 50], help="lines in the script")
    parser.add_argument("--format", default="wav", help="output format (wav, flac, ogg, mp3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="glmtts-bench-script-") as scratch:
        folder = Path(scratch)
        checkpoint = args.checkpoint
        if checkpoint is None:
            checkpoint = folder / "checkpoint"
            subprocess.run(
                [sys.executable, "-m", "glmtts_mcp", "checkpoint", "make-tiny", str(checkpoint)], check=True, cwd=ROOT
            )
        common = ["--checkpoint", str(checkpoint), "--voices-dir", str(folder / "voices"), "--output-dir", str(folder)]
        if args.checkpoint is None:
            common += ["--whisper-model", "tiny-random"]
        reference = ROOT / "examples" / "reference.flac"
        transcript = "The quick brown fox jumps over the lazy dog."
        pcm, rate = sf.read(reference, dtype="float32")
        second = folder / "second.wav"
        sf.write(second, pcm[: int(len(pcm) * 0.9)], rate)  # another clip: another voice
        for name, clip in (("Host", reference), ("Guest", second)):
            _cli(
                [
                    "say",
                    "Hi.",
                    "--reference",
                    str(clip),
                    "--transcript",
                    transcript,
                    "-o",
                    str(folder / "c.wav"),
                    *common,
                ]
            )
            voices = subprocess.run(
                [sys.executable, "-m", "glmtts_mcp", "voices", "list", "--json", *common],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
            )
            unnamed = [v for v in json.loads(voices.stdout) if v["name"] not in ("Host", "Guest")]
            _cli(["voices", "rename", unnamed[0]["voice_id"], name, *common])
        print(f"{'lines':>6}  {'audio s':>8}  {'peak RSS MiB':>12}")
        for count in args.lines:
            script = folder / f"script-{count}.txt"
            script.write_text(
                "\n".join(f"{('Host', 'Guest')[n % 2]}: {LINES[n % 2]}" for n in range(count)), encoding="utf-8"
            )
            out = folder / f"script-{count}.{args.format}"
            peak_kib = _cli(["say", "--script", str(script), "-o", str(out), *common])
            print(f"{count:>6}  {sf.info(str(out)).duration:>8.1f}  {peak_kib / 1024:>12.1f}")


if __name__ == "__main__":
    main()
