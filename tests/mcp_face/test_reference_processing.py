"""`reference_processing`: the setting, the voices it makes, exact re-extraction and segment joins."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from glmtts_mcp.app.cloning import clone_or_get
from glmtts_mcp.app.core import build_app
from glmtts_mcp.config import ConfigError, load_settings
from glmtts_mcp.engine.frontend.audio_features import resample
from glmtts_mcp.engine.runtime.pipeline import CROSSFADE_MS, MODEL_SAMPLE_RATE
from glmtts_mcp.engine.types import SynthesisOptions, VoiceFeatures

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TRANSCRIPT = "The quick brown fox jumps over the lazy dog."


def test_setting_from_env_file_and_flag_and_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert load_settings().reference_processing == "clean"
    monkeypatch.setenv("GLMTTS_MCP_REFERENCE_PROCESSING", "upstream")
    assert load_settings().reference_processing == "upstream"
    assert load_settings(reference_processing="clean").reference_processing == "clean"
    monkeypatch.delenv("GLMTTS_MCP_REFERENCE_PROCESSING")
    config = tmp_path / "config.toml"
    config.write_text('reference_processing = "upstream"\n')
    assert load_settings(config).reference_processing == "upstream"
    with pytest.raises(ConfigError, match=r"--reference-processing: .*'clean' or 'upstream' \(got 'raw'\)"):
        load_settings(reference_processing="raw")


def _clone(app, clip: Path):
    return clone_or_get(app.host.ensure_loaded(), app.library, clip, None, TRANSCRIPT, "en", None).record


def _features(app, voice_id: str) -> tuple[str, dict[str, torch.Tensor]]:
    loaded = app.library.load_features(voice_id)
    return loaded.tier, loaded.tensors


def _stereo_clip(path: Path, clip_writer: Callable, subtype: str = "PCM_16", rate: int = 22050) -> Path:
    """Two channels that differ (other pitches and levels), as a WAV of `subtype` (16-bit at 22.05 kHz)."""
    left = sf.read(clip_writer(path.with_suffix(".l.wav"), seconds=3.0, sample_rate=rate, pitch=180.0))[0]
    right = sf.read(clip_writer(path.with_suffix(".r.wav"), seconds=3.0, sample_rate=rate, pitch=290.0))[0]
    noise = 1e-4 * np.random.default_rng(0).standard_normal((len(left), 2))  # below 16 bits' step: kept only past 16
    sf.write(path, np.stack([left, 0.4 * right], axis=1) + noise * (subtype != "PCM_16"), rate, subtype=subtype)
    return path


@pytest.mark.parametrize(
    ("processing", "channels", "subtype", "kept"),
    [
        ("clean", 1, "PCM_16", "PCM_16"),
        ("upstream", 1, "PCM_16", "PCM_16"),
        ("upstream", 2, "PCM_16", "PCM_16"),
        ("upstream", 2, "PCM_24", "PCM_24"),  # 24-bit stereo at 44.1 kHz: kept as 24-bit FLAC
        ("upstream", 2, "FLOAT", "FLOAT"),  # float: kept as a float WAV
    ],
)
def test_reextraction_gives_bit_identical_features(
    engine_settings: Callable,
    tmp_path: Path,
    espeak_writer,
    clip_writer,
    processing: str,
    channels: int,
    subtype: str,
    kept: str,
) -> None:
    """A stale voice is re-extracted from its kept reference into exactly the features the first clone made."""
    clip = tmp_path / "speech.wav"
    if channels == 2:
        _stereo_clip(clip, clip_writer, subtype, 22050 if subtype == "PCM_16" else 44100)
    elif not espeak_writer(clip, TRANSCRIPT):
        clip_writer(clip, seconds=3.0, sample_rate=22050)
    settings = engine_settings(reference_processing=processing)
    app = build_app(settings)
    try:
        record = _clone(app, clip)
        assert record.reference_processing == processing
        info = sf.info(app.library.reference_audio_path(record.id))
        assert (info.channels, info.subtype) == (channels, kept)
        if kept == "FLOAT":  # the MCP resource's FLAC rendition: 24 bits of the float samples
            heard = sf.read(io.BytesIO(app.library.reference_flac(record.id)), dtype="float64")[0]
            floats = sf.read(app.library.reference_audio_path(record.id), dtype="float64")[0]
            assert np.abs(heard - np.clip(floats, -1, 1)).max() <= 2.0**-24
        first = app.library.load_features(record.id).tensors
    finally:
        app.close()
    meta_path = settings.voices_dir / "voices" / record.id / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["fingerprint"] = "an older checkpoint"  # as after an upgrade: the voice is stale
    meta_path.write_text(json.dumps(meta))
    app = build_app(settings)
    try:
        assert [r.id for r in app.library.stale_voices()] == [record.id]
        tier, again = _features(app, record.id)
    finally:
        app.close()
    assert tier == "reextracted"
    assert set(again) == set(first)
    for name in first:
        assert torch.equal(first[name], again[name]), name


def test_upstream_takes_each_feature_of_a_stereo_clip_from_the_signal_upstream_uses(
    engine_settings: Callable, tmp_path: Path, clip_writer
) -> None:
    """Upstream tokenizes channel 0 (its SpeechTokenizer) but computes the prompt mel and the CAMPPlus
    embedding from the channel mean (its load_wav); each resampled straight from the file's rate."""
    clip = _stereo_clip(tmp_path / "stereo.wav", clip_writer)
    app = build_app(engine_settings(reference_processing="upstream"))
    try:
        tensors = app.library.load_features(_clone(app, clip).id).tensors
        engine = app.host.ensure_loaded()
        read = torch.from_numpy(sf.read(clip, dtype="float32", always_2d=True)[0].T.copy())  # torchaudio.load
        first, mix = read[:1], read.mean(dim=0, keepdim=True)
        assert torch.equal(
            tensors["prompt_speech_ids"], engine.models.speech_tokenizer.tokenize(resample(first, 22050, 16000))
        )
        assert torch.equal(tensors["speaker_embedding"], engine.models.speaker.embed(resample(mix, 22050, 16000)))
        assert torch.equal(tensors["prompt_mel"], engine.prompt_mel(resample(mix, 22050, MODEL_SAMPLE_RATE))[0])
        assert not torch.equal(tensors["prompt_mel"], engine.prompt_mel(resample(first, 22050, MODEL_SAMPLE_RATE))[0])
    finally:
        app.close()


def test_the_same_clip_under_each_processing_is_its_own_voice(
    engine_settings: Callable, tmp_path: Path, clip_writer
) -> None:
    clip = clip_writer(tmp_path / "clip.wav", seconds=3.0, sample_rate=16000)
    ids = {}
    for processing in ("clean", "upstream"):
        app = build_app(engine_settings(reference_processing=processing))
        try:
            record = _clone(app, clip)
            ids[processing] = record.id
            assert app.library.resolve(record.id).reference_processing == processing
            assert record.sample_rate == (16000 if processing == "upstream" else MODEL_SAMPLE_RATE)
        finally:
            app.close()
    assert ids["clean"] != ids["upstream"]


def test_upstream_joins_segments_by_plain_concatenation(engine_settings: Callable, tmp_path: Path, clip_writer) -> None:
    """`upstream` hands out each piece whole (concatenated as upstream does); `clean` crossfades the joins."""
    app = build_app(engine_settings())
    try:
        engine = app.host.ensure_loaded()
        voice = engine.extract_voice(engine.prepare_reference(clip_writer(tmp_path / "c.wav")), TRANSCRIPT)
        features = VoiceFeatures(tensors=voice.features.tensors)
        text = "今天天气很好，我们一起去公园散步吧，顺便看看湖边新开的花和草。明天见。"  # two pieces
        options = SynthesisOptions(seed=3)
        clean = [c.pcm for c in engine.synthesize(text, features, options)]
        engine.reference_processing = "upstream"
        plain = [c.pcm for c in engine.synthesize(text, features, options)]
    finally:
        app.close()
    assert len(plain) == len(clean) >= 2
    fade = int(MODEL_SAMPLE_RATE * CROSSFADE_MS / 1000)
    assert sum(map(len, plain)) - sum(map(len, clean)) == fade * (len(plain) - 1)  # each crossfade overlaps
    assert len(plain[0]) == len(clean[0]) + fade and np.array_equal(plain[0][: len(clean[0])], clean[0])


def test_upstream_speaks_a_piece_without_letters_that_clean_skips(
    engine_settings: Callable, tmp_path: Path, clip_writer
) -> None:
    text = (
        "今天天气很好，我们一起去公园散步吧，顺便看看湖边新开的花和草(|··:、—.?"  # normalizes to two pieces, "?" last
    )
    app = build_app(engine_settings())
    try:
        engine = app.host.ensure_loaded()
        voice = engine.extract_voice(engine.prepare_reference(clip_writer(tmp_path / "c.wav")), TRANSCRIPT)
        features = VoiceFeatures(tensors=voice.features.tensors)
        clean = [c.text for c in engine.synthesize(text, features, SynthesisOptions(seed=1))]
        engine.reference_processing = "upstream"
        spoken = [c.text for c in engine.synthesize(text, features, SynthesisOptions(seed=1))]
    finally:
        app.close()
    assert spoken == [clean[0], "?"] and len(clean) == 1
