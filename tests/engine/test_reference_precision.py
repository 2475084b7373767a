"""`reference_processing=upstream` takes its features from the samples exactly as upstream reads the file,
24-bit and float sources included, and a voice re-extracted from the library's copy gets bit-identical ones.

Upstream's glmtts_inference reads the clip with `torchaudio.load` (float32, channels first, a b-bit integer
sample k as k / 2^(b-1)); its speech tokenizer takes channel 0, its `load_wav` (prompt mel, CAMPPlus) the
channel mean, each resampled by torchaudio's Resample. The expected features below are computed that way
from soundfile's float32 read of the file (torchaudio's own convention) with the modules the golden cases
check against upstream; before the change the clip was quantized to 16 bits first and the prompt mel of a
24-bit clip missed by about 0.5.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from glmtts_mcp.engine.frontend.audio_features import resample
from glmtts_mcp.engine.frontend.reference_clip import load_reference, samples_as_read
from glmtts_mcp.engine.runtime.pipeline import Engine
from glmtts_mcp.engine.types import ReferenceAudio
from glmtts_mcp.voices.reference_file import decode_reference, encode_reference, reference_file_name

RATE = 44100
PROMPT_MEL_LIMIT = 8e-4  # the golden cases' tolerances (mel24k, CAMPPlus)
EMBEDDING_LIMIT = 2e-3


def speech_like(seconds: float, rate: int, seed: int) -> np.ndarray:
    """Gliding harmonics with syllable envelopes and faint noise (float64, about -14 dBFS)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(130 + 30 * np.sin(2 * np.pi * 0.5 * t)) / rate
    tone = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None) ** 0.5
    return 0.2 * tone * envelope + 3e-4 * rng.standard_normal(len(t))


def stereo_clip(path: Path, subtype: str) -> Path:
    left = speech_like(3.0, RATE, 1)
    sf.write(
        path,
        np.stack([left, 0.6 * np.roll(left, 17) + 0.05 * speech_like(3.0, RATE, 2)], axis=1),
        RATE,
        subtype=subtype,
    )
    return path


@pytest.fixture(scope="module")
def engine(tiny_checkpoint: Path, one_torch_thread: None) -> Iterator[Engine]:
    engine = Engine.load(tiny_checkpoint, device="cpu", dtype="float32", reference_processing="upstream")
    yield engine
    engine.unload()


@pytest.mark.parametrize(("subtype", "kept"), [("PCM_24", np.int32), ("FLOAT", np.float32)])
def test_features_come_from_the_samples_as_upstream_reads_the_file(
    engine: Engine, tmp_path: Path, subtype: str, kept: type
) -> None:
    path = stereo_clip(tmp_path / "clip.wav", subtype)
    ref = engine.prepare_reference(path)
    assert ref.pcm.dtype == kept and ref.pcm.shape == (3 * RATE, 2) and ref.sample_rate == RATE
    read = torch.from_numpy(sf.read(path, dtype="float32", always_2d=True)[0].T.copy())  # torchaudio.load
    np.testing.assert_array_equal(samples_as_read(ref.pcm), read.T.numpy())  # nothing lost on the way in
    mix = read.mean(dim=0, keepdim=True)  # upstream's load_wav
    voice = engine.extract_voice(ref, "hello there, this is a test of the reference")
    tensors = voice.features.tensors
    expected_mel = engine.prompt_mel(resample(mix, RATE, 24000))[0]
    expected_embedding = engine.models.speaker.embed(resample(mix, RATE, 16000))
    expected_ids = engine.models.speech_tokenizer.tokenize(resample(read[:1], RATE, 16000))
    assert (tensors["prompt_mel"] - expected_mel).abs().max().item() <= PROMPT_MEL_LIMIT
    assert (tensors["speaker_embedding"] - expected_embedding).abs().max().item() <= EMBEDDING_LIMIT
    assert torch.equal(tensors["prompt_speech_ids"], expected_ids.to(torch.int64))

    # the library's copy: lossless, and a re-extraction from it gives bit-identical features
    name = reference_file_name(ref.pcm)
    stored, rate = decode_reference(name, encode_reference(ref.pcm, ref.sample_rate))
    again = engine.extract_voice(
        ReferenceAudio(pcm=stored, sample_rate=rate, duration_s=len(stored) / rate),
        "hello there, this is a test of the reference",
    )
    for key, value in tensors.items():
        assert torch.equal(again.features.tensors[key], value), key


def test_a_24_bit_file_of_16_bit_audio_is_the_16_bit_clip(tmp_path: Path) -> None:
    """The samples decide the kept precision, not the container: the same audio is the same voice."""
    samples = np.rint(speech_like(3.0, RATE, 3) * 32768).clip(-32768, 32767) / 32768
    sf.write(tmp_path / "a.wav", samples, RATE, subtype="PCM_16")
    sf.write(tmp_path / "b.flac", samples, RATE, subtype="PCM_24")
    as16 = load_reference(tmp_path / "a.wav", processing="upstream")
    as24 = load_reference(tmp_path / "b.flac", processing="upstream")
    assert as16.pcm.dtype == as24.pcm.dtype == np.int16
    np.testing.assert_array_equal(as16.pcm, as24.pcm)
