"""Forks processes that share a voice library, for test_voices_processes.py.

Started once (one torch import), it reads commands on stdin and answers on stdout:
    fork clone ROOT CALLS_FILE READY_FILE START_FILE OUT_FILE  -> pid   clone one clip once START_FILE exists
    fork churn ROOT SEED READY_FILE                            -> pid   write, rename, delete voices until killed
    wait PID                                                   -> exit code (negative: killed by that signal)
Each job runs in a forked child, a real separate process; this parent holds no library and no threads.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

from voicelib_helpers import RATE, SCHEMA, make_pcm, make_voice

from glmtts_mcp.voices import NewVoiceData, VoiceLibrary, VoiceLibraryError


def clone(root: str, calls_file: str, ready_file: str, start_file: str, out_file: str) -> None:
    library = VoiceLibrary(Path(root), SCHEMA, flush_interval_s=0)
    Path(ready_file).touch()
    while not os.path.exists(start_file):
        time.sleep(0.005)

    def create() -> NewVoiceData:
        with open(calls_file, "a") as handle:
            handle.write("create\n")
        time.sleep(0.5)  # extraction takes a while: the others must wait, not extract too
        return make_voice(7)

    record, existed = library.get_or_create(make_pcm(7), RATE, "same clip", create)
    library.close()
    Path(out_file).write_text(json.dumps({"id": record.id, "existed": existed}))


def churn(root: str, seed: str, ready_file: str) -> None:
    library = VoiceLibrary(Path(root), SCHEMA, flush_interval_s=0.05)
    made: list[str] = []
    for step in range(1_000_000):
        voice_seed = int(seed) * 100_000 + step
        data = make_voice(voice_seed, mel_frames=50)
        data.tags = [f"seed-{voice_seed}"]
        record, _ = library.get_or_create(make_pcm(voice_seed, 0.2), RATE, "churn", lambda d=data: d)
        made.append(record.id)
        library.load_features(record.id)
        try:
            if step % 3 == 1:
                library.rename(made[-2], f"renamed-{seed}-{step}")
            if step % 4 == 3:
                library.delete(made.pop(0))
        except VoiceLibraryError:
            pass
        if step == 0:
            Path(ready_file).touch()


JOBS = {"clone": clone, "churn": churn}


def serve() -> None:
    print("ready", flush=True)
    while line := sys.stdin.readline():
        command, *args = line.split()
        if command == "fork":
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    JOBS[args[0]](*args[1:])
                except BaseException:
                    traceback.print_exc()
                    code = 1
                os._exit(code)
            print(pid, flush=True)
        elif command == "wait":
            _, status = os.waitpid(int(args[0]), 0)
            print(os.waitstatus_to_exitcode(status), flush=True)


if __name__ == "__main__":
    serve()
