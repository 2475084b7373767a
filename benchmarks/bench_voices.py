"""Voice library costs for a realistic 10 s voice: load times per tier and bytes per voice.

Run: .venv/bin/python benchmarks/bench_voices.py [--voices N] [--repeats N]
Also: how long opening a library takes (every folder scanned), with and without the model's feature rules.
Targets: memory hit < 1 ms, disk load (cold library instance) < 20 ms, features < 512 KB per voice.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from glmtts_mcp.app.core import feature_rules
from glmtts_mcp.engine.feature_limits import FeatureLimits
from glmtts_mcp.engine.types import FEATURE_SCHEMA, FEATURE_SCHEMA_VERSION
from glmtts_mcp.voices import FeatureSchema, NewVoiceData, VoiceLibrary

SAMPLE_RATE = 24_000
SECONDS = 10.0
# The official checkpoint's facts (its LLM vocabulary, codebook, flow rates and widths, CAMPPlus's output).
REAL_LIMITS = FeatureLimits(98_304, 32_768, 25.0, 80, 50.0, 192)


def realistic_voice(seed: int) -> tuple[np.ndarray, NewVoiceData]:
    """10 s of speech-like audio and features shaped like the engine's for it."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SAMPLE_RATE * SECONDS)) / SAMPLE_RATE
    pitch = 120 + 30 * np.sin(2 * np.pi * 0.3 * t)
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 3.0 * t)) * (rng.random(t.size) > 0.02)
    pcm = 0.3 * envelope * np.sin(2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE) + 0.01 * rng.standard_normal(t.size)
    gen = torch.Generator().manual_seed(seed)
    data = NewVoiceData(
        tensors={
            "prompt_text_ids": torch.randint(0, 98_304, (40,), generator=gen),
            "prompt_speech_ids": torch.randint(0, 6561, (250,), generator=gen),
            "prompt_mel": torch.randn(500, 80, generator=gen) * 2 - 6,
            "speaker_embedding": torch.randn(192, generator=gen),
        },
        transcript="A ten second reference recording read aloud for the benchmark.",
        transcript_source="user",
        language="en",
        duration_s=SECONDS,
        timings={"speech_tokenizer": 0.4, "campplus": 0.05, "mel": 0.02, "text": 0.001},
    )
    return pcm.astype(np.float32), data


def ms(samples: list[float]) -> str:
    return f"{1000 * statistics.median(samples):8.3f} ms (p90 {1000 * sorted(samples)[int(0.9 * len(samples))]:.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--voices", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    schema = FeatureSchema(FEATURE_SCHEMA_VERSION, FEATURE_SCHEMA)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ids = []
        with VoiceLibrary(root, schema, flush_interval_s=0) as library:
            create_s = []
            for seed in range(args.voices):
                pcm, data = realistic_voice(seed)
                started = time.perf_counter()
                record, _ = library.get_or_create(pcm, SAMPLE_RATE, data.transcript, lambda d=data: d)
                create_s.append(time.perf_counter() - started)
                ids.append(record.id)
            existing_s = []
            for _ in range(20):
                started = time.perf_counter()
                library.get_or_create(pcm, SAMPLE_RATE, data.transcript, lambda: data)
                existing_s.append(time.perf_counter() - started)
            memory_s = []
            for i in range(args.repeats):
                loaded = library.load_features(ids[i % len(ids)])
                assert loaded.tier == "memory"
                memory_s.append(loaded.load_s)
        disk_s = []
        for voice in ids:  # a new instance per load: nothing cached in this process
            with VoiceLibrary(root, schema, flush_interval_s=0) as cold:
                loaded = cold.load_features(voice)
                assert loaded.tier == "disk"
                disk_s.append(loaded.load_s)
        scan_s: dict[str, list[float]] = {"schema only": [], "with the model's rules": []}
        for _ in range(5):  # a full scan of every folder, as a process opening the library does
            for label, rules in (("schema only", None), ("with the model's rules", feature_rules(REAL_LIMITS))):
                started = time.perf_counter()
                with VoiceLibrary(root, schema, rules=rules, flush_interval_s=0) as opened:
                    scan_s[label].append(time.perf_counter() - started)
                    assert not any(v.broken for v in opened.list_voices(limit=500).voices)
        folder = root / "voices" / ids[0]
        features_bytes = (folder / "features.safetensors").stat().st_size
        folder_bytes = sum(p.stat().st_size for p in folder.iterdir())
        memory_bytes = sum(t.numel() * t.element_size() for t in loaded.tensors.values())
    rows = [
        ("store a new voice (features + FLAC + meta, fsynced)", ms(create_s)),
        ("clone of a stored voice (id hash + lookup)", ms(existing_s)),
        ("load: memory hit", ms(memory_s) + "   target < 1 ms"),
        ("load: disk (cold library instance)", ms(disk_s) + "   target < 20 ms"),
        ("features.safetensors per voice", f"{features_bytes / 1024:8.1f} KB   target < 512 KB"),
        ("whole voice folder (incl. reference.flac)", f"{folder_bytes / 1024:8.1f} KB"),
        ("features in memory", f"{memory_bytes / 1024:8.1f} KB"),
        *((f"open the library ({args.voices} folders scanned), {label}", ms(s)) for label, s in scan_s.items()),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"voice library, {args.voices} voices of {SECONDS:.0f} s at {SAMPLE_RATE} Hz, torch {torch.__version__}")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
