"""Peak memory of `glmtts-mcp say --script` against the length of the script.

Each row runs the command in a fresh process (so each peak is its own) on a two-voice dialogue of N lines
and prints the process's peak resident memory (the kernel's VmHWM) beside the seconds of audio written.
A script narrated line by line, each line written as soon as the lines before it are (two lines in
flight), keeps the peak flat as the script grows: memory holds those lines, never the script.

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

from bench_narration_memory import ROOT, peak_kib, scratch_flags  # run as a script: benchmarks/ is on the path

LINES = ("Hello there, this is one sentence of a longer story that goes on for a while.", "And here is the answer.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="checkpoint folder (default: a tiny random one, made here)")
    parser.add_argument("--lines", type=int, nargs="+", default=[5, 20, 50], help="lines in the script")
    parser.add_argument("--format", default="wav", help="output format (wav, flac, ogg, mp3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="glmtts-bench-script-") as scratch:
        folder = Path(scratch)
        common = scratch_flags(args.checkpoint, folder)
        reference = ROOT / "examples" / "reference.flac"
        transcript = "The quick brown fox jumps over the lazy dog."
        pcm, rate = sf.read(reference, dtype="float32")
        second = folder / "second.wav"
        sf.write(second, pcm[: int(len(pcm) * 0.9)], rate)  # another clip: another voice
        for name, clip in (("Host", reference), ("Guest", second)):
            peak_kib(
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
            peak_kib(["voices", "rename", unnamed[0]["voice_id"], name, *common])
        print(f"{'lines':>6}  {'audio s':>8}  {'peak RSS MiB':>12}")
        for count in args.lines:
            script = folder / f"script-{count}.txt"
            script.write_text(
                "\n".join(f"{('Host', 'Guest')[n % 2]}: {LINES[n % 2]}" for n in range(count)), encoding="utf-8"
            )
            out = folder / f"script-{count}.{args.format}"
            peak = peak_kib(["say", "--script", str(script), "-o", str(out), *common])
            print(f"{count:>6}  {sf.info(str(out)).duration:>8.1f}  {peak / 1024:>12.1f}")


if __name__ == "__main__":
    main()
