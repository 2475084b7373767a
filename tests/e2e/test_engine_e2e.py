"""The real pipeline end to end on the tiny random-weight checkpoint: clone, narrate, stream, encode, refuse."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from narration import whole_narration
from safetensors.torch import load_file, save_file

from glmtts_mcp.engine.checkpoint.layout import CheckpointError
from glmtts_mcp.engine.runtime.output_encoding import encode_audio, supported_formats
from glmtts_mcp.engine.types import (
    FEATURE_SCHEMA,
    AudioInputError,
    EngineError,
    ReferenceAudio,
    SynthesisOptions,
    VoiceFeatures,
)

# Chinese sentences (split on "。" once 30 characters are reached) and an English one: several segments.
LONG_TEXT = (
    "今天天气很好，我们一起去公园散步吧，顺便看看湖边新开的花。"
    "这本书讲述了一个关于勇气和友谊的故事，孩子们都很喜欢听。"
    "The end of the story comes at last."
)


def _stored(features: VoiceFeatures, tmp_path: Path) -> VoiceFeatures:
    """The features as the library keeps them: written to safetensors and read back."""
    path = tmp_path / "features.safetensors"
    save_file({k: v.contiguous() for k, v in features.tensors.items()}, str(path))
    return VoiceFeatures(tensors=load_file(str(path)))


def test_clone_gives_schema_features_and_stage_timings(voice, reference_text: str) -> None:
    tensors = voice.features.tensors
    assert set(tensors) == set(FEATURE_SCHEMA)
    for name, (dtype, ndim) in FEATURE_SCHEMA.items():
        assert str(tensors[name].dtype) == f"torch.{dtype}" and tensors[name].dim() == ndim, name
    assert tensors["speaker_embedding"].shape == (192,)
    assert tensors["prompt_mel"].shape[1] == 80
    # 25 speech tokens and 50 mel frames per second of reference
    assert abs(tensors["prompt_mel"].shape[0] - 2 * tensors["prompt_speech_ids"].shape[0]) <= 4
    assert int(tensors["prompt_speech_ids"].min()) >= 0 and int(tensors["prompt_speech_ids"].max()) < 32768
    assert voice.transcript == reference_text and voice.transcript_source == "user"
    assert set(voice.timings) == {"text", "speech_tokenizer", "campplus", "mel"}


def test_clone_without_transcript_uses_whisper(engine, reference_wav: Path) -> None:
    ref = engine.prepare_reference(reference_wav)
    first = engine.extract_voice(ref, None)  # the tiny random Whisper hears (nonsense) words here
    assert first.transcript.strip() and first.features.tensors["prompt_text_ids"].numel() > 0
    assert first.transcript_source == "whisper" and isinstance(first.language, str)
    assert "whisper" in first.timings
    again = engine.extract_voice(ref, None)
    assert again.transcript == first.transcript  # transcription is deterministic


@pytest.mark.slow
def test_long_text_streams_one_chunk_per_segment(engine, voice, tmp_path: Path) -> None:
    features = _stored(voice.features, tmp_path)
    options = SynthesisOptions(seed=7)
    start = time.perf_counter()
    chunks, arrival = [], []
    for chunk in engine.synthesize(LONG_TEXT, features, options):
        arrival.append(time.perf_counter() - start)
        chunks.append(chunk)
    assert len(chunks) == chunks[0].segment_count >= 2
    assert [c.segment_index for c in chunks] == list(range(len(chunks)))
    assert all(c.sample_rate == 24000 and c.pcm.dtype == np.float32 and len(c.pcm) for c in chunks)
    assert arrival[0] < arrival[-1]  # the first piece is handed out before the rest is computed
    whole = np.concatenate([c.pcm for c in chunks])
    assert np.all(np.isfinite(whole)) and np.max(np.abs(whole)) <= 1.0
    # streaming is exactly the whole narration, and a fixed seed gives the same audio again
    assert np.array_equal(whole, whole_narration(engine, LONG_TEXT, features, options))


def test_seed_decides_the_audio(engine, voice) -> None:
    text = "Hello there, my friend."
    a = whole_narration(engine, text, voice.features, SynthesisOptions(seed=3))
    b = whole_narration(engine, text, voice.features, SynthesisOptions(seed=3))
    c = whole_narration(engine, text, voice.features, SynthesisOptions(seed=4))
    assert np.array_equal(a, b)
    assert not (len(a) == len(c) and np.array_equal(a, c))


def test_output_sample_rate_and_every_format(engine, voice) -> None:
    pcm = whole_narration(engine, "A short line to encode.", voice.features, SynthesisOptions(sample_rate=16000))
    assert pcm.dtype == np.float32 and len(pcm) > 0
    for fmt in supported_formats():
        data = encode_audio(pcm, 16000, fmt)
        decoded, rate = sf.read(io.BytesIO(data), dtype="float32")
        assert abs(len(decoded) / rate - len(pcm) / 16000) < 0.15, fmt


def test_stored_features_never_run_whisper_or_prompt_encoders(
    engine, voice, reference_text: str, tmp_path: Path, monkeypatch
) -> None:
    calls: dict[str, int] = {}

    def counting(name: str, fn):
        def wrapper(*args, **kwargs):
            calls[name] = calls.get(name, 0) + 1
            return fn(*args, **kwargs)

        return wrapper

    models = engine.models
    transcriber = engine.transcriber
    monkeypatch.setattr(transcriber, "transcribe", counting("whisper", transcriber.transcribe))
    monkeypatch.setattr(
        models.speech_tokenizer, "tokenize", counting("speech_tokenizer", models.speech_tokenizer.tokenize)
    )
    monkeypatch.setattr(models.speaker, "embed", counting("campplus", models.speaker.embed))
    monkeypatch.setattr(engine, "prompt_mel", counting("mel", engine.prompt_mel))
    pcm = whole_narration(engine, "Stored features only.", _stored(voice.features, tmp_path))
    assert len(pcm) > 0 and calls == {}
    # and the counters do count: a clone runs the three encoders once each
    engine.extract_voice(_reference_from(voice), reference_text)
    assert calls == {"speech_tokenizer": 1, "campplus": 1, "mel": 1}


def _reference_from(voice):
    """A ReferenceAudio rebuilt from the voice's own prompt (only its shape matters to the counters)."""
    from glmtts_mcp.engine.types import ReferenceAudio

    n = voice.features.tensors["prompt_mel"].shape[0] * 480
    rng = np.random.default_rng(0)
    pcm = np.rint(np.clip(0.1 * rng.standard_normal(n), -1, 1) * 32767).astype(np.int16)  # kept samples are int16
    return ReferenceAudio(pcm=pcm, sample_rate=24000, duration_s=n / 24000)


@pytest.mark.parametrize(
    ("text", "options", "needle"),
    [
        ("", SynthesisOptions(), "nothing to speak"),  # empty and over-long texts are refused by the faces
        ("   ", SynthesisOptions(), "nothing to speak"),
        ("... !!!", SynthesisOptions(), "nothing to speak"),
        ("Hi.", SynthesisOptions(temperature=0.0), "temperature"),
        ("Hi.", SynthesisOptions(temperature=5.0), "temperature"),
        ("Hi.", SynthesisOptions(top_p=0.0), "top_p"),
        ("Hi.", SynthesisOptions(top_p=1.5), "top_p"),
        ("Hi.", SynthesisOptions(top_k=0), "top_k"),
        ("Hi.", SynthesisOptions(sample_rate=1000), "sample_rate"),
        ("Hi.", SynthesisOptions(seed=-1), "seed"),
    ],
)
def test_bad_requests_are_refused_before_any_model_runs(engine, voice, text, options, needle) -> None:
    with pytest.raises(EngineError, match=needle):
        engine.synthesize(text, voice.features, options)


def test_unusable_reference_audio_is_refused(engine, tmp_path: Path) -> None:
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(48000, dtype=np.float32), 24000)
    with pytest.raises(AudioInputError, match="silent"):
        engine.prepare_reference(silent)
    short = tmp_path / "short.wav"
    t = np.arange(12000) / 24000
    sf.write(short, (0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), 24000)
    with pytest.raises(AudioInputError, match="2-30 s"):
        engine.prepare_reference(short)
    long = tmp_path / "long.wav"
    t = np.arange(31 * 16000) / 16000
    sf.write(long, (0.3 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 2 * t)) / 2).astype(np.float32), 16000)
    with pytest.raises(AudioInputError, match="limit is 30 s"):
        engine.prepare_reference(long)
    with pytest.raises(AudioInputError):
        engine.prepare_reference(b"RIFF not really a wave file")
    with pytest.raises(AudioInputError, match="no speakable text"):
        engine.extract_voice(_reference_from_seconds(3.0), "   ...   ")


def _reference_from_seconds(seconds: float):
    from glmtts_mcp.engine.types import ReferenceAudio

    n = int(seconds * 24000)
    pcm = np.rint(np.clip(0.1 * np.random.default_rng(1).standard_normal(n), -1, 1) * 32767).astype(np.int16)
    return ReferenceAudio(pcm=pcm, sample_rate=24000, duration_s=seconds)


def test_missing_whisper_model_names_the_fix(tiny_checkpoint: Path, reference_wav: Path, reference_text: str) -> None:
    from glmtts_mcp.engine.runtime.pipeline import Engine

    engine = Engine.load(tiny_checkpoint, device="cpu", dtype="float32", whisper_model="no-such-size")
    ref = engine.prepare_reference(reference_wav)
    with pytest.raises(CheckpointError, match="glmtts-mcp download"):
        engine.extract_voice(ref, None)
    assert engine.extract_voice(ref, reference_text).transcript_source == "user"  # a transcript needs no Whisper


def test_a_capped_whisper_transcript_is_flagged_on_the_clone(engine) -> None:
    """A wordless tone makes the random Whisper repeat itself up to its cap: the clone says so."""
    t = np.arange(24000 * 3) / 24000
    tone = np.rint(0.2 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 2 * t)) * 32767).astype(np.int16)
    cloned = engine.extract_voice(ReferenceAudio(pcm=tone, sample_rate=24000, duration_s=3.0), None)
    assert cloned.transcript_source == "whisper"
    assert any("length cap" in w and "{transcript}" in w for w in cloned.warnings)
    with_text = engine.extract_voice(ReferenceAudio(pcm=tone, sample_rate=24000, duration_s=3.0), "a hum")
    assert with_text.warnings == []


def test_vocoder_stays_float32_whatever_the_flow_dtype(tiny_checkpoint: Path) -> None:
    from glmtts_mcp.engine.checkpoint.loader import load_models

    models = load_models(tiny_checkpoint, "cpu", flow_dtype=torch.bfloat16)
    assert next(models.flow.parameters()).dtype == torch.bfloat16
    assert {p.dtype for p in models.hift.parameters()} == {torch.float32}


def test_unload_then_reload_gives_the_same_audio(tiny_checkpoint: Path, voice) -> None:
    """The host reloads a fresh engine after an unload; the audio is the same as before it."""
    from glmtts_mcp.app.engine_host import EngineHost
    from glmtts_mcp.engine.runtime.pipeline import Engine

    host = EngineHost(lambda: Engine.load(tiny_checkpoint, device="cpu", dtype="float32"), tiny_checkpoint, 0)
    text = "After a nap the model wakes up."
    first = host.ensure_loaded()
    before = whole_narration(first, text, voice.features, SynthesisOptions(seed=11))
    host.unload()
    assert not first.loaded and first.memory_info()["loaded"] is False
    second = host.ensure_loaded()
    after = whole_narration(second, text, voice.features, SynthesisOptions(seed=11))
    assert second.loaded and np.array_equal(before, after) and host.loads == 2
    info = second.memory_info()
    assert info["device"] == "cpu" and info["llm_dtype"] == "float32"
    assert all(v > 0 for v in info["parameter_bytes"].values())
    host.unload()


def test_engine_properties(engine) -> None:
    assert engine.device == torch.device("cpu") and engine.dtype == "float32"
    assert engine.queue_depth == 0
