"""Reference audio: decoding every container, mono/resample/trim/loudness, and each refusal."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from glmtts_mcp.engine.frontend import reference_clip as reference_audio
from glmtts_mcp.engine.frontend.audio_features import resample
from glmtts_mcp.engine.frontend.reference_clip import (
    CLEAN_QUANTIZE_SCALE,
    PEAK_LIMIT,
    TARGET_RMS_DBFS,
    load_reference,
    reference_pcm_at,
)
from glmtts_mcp.engine.types import AudioInputError


def voiced(seconds: float, rate: int, seed: int = 0, amp: float = 0.2) -> np.ndarray:
    """A speech-like signal: gliding F0 with 14 harmonics, syllable envelopes (4 per second), faint noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 120 + 25 * np.sin(2 * np.pi * 0.4 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    tone = sum(np.sin(k * phase) / k for k in range(1, 15))
    syllables = np.clip(np.sin(2 * np.pi * 2.0 * t + 0.3), 0, None) ** 0.6
    return (amp * tone * syllables + 1e-3 * rng.standard_normal(len(t))).astype(np.float32)


def silence(seconds: float, rate: int) -> np.ndarray:
    return np.zeros(int(seconds * rate), dtype=np.float32)


def write(path: Path, pcm: np.ndarray, rate: int, fmt: str, subtype: str) -> Path:
    sf.write(path, pcm, rate, format=fmt, subtype=subtype)
    return path


def level(ref) -> np.ndarray:
    """A clean clip's samples as the floats they were quantized from (rint(x * 32767))."""
    return ref.pcm.astype(np.float64) / CLEAN_QUANTIZE_SCALE


def active_rms_dbfs(pcm: np.ndarray, rate: int) -> float:
    rms, active, _, _ = reference_audio._active_frames(pcm, rate)
    return 20 * np.log10(np.sqrt(np.mean(rms[active] ** 2)))


@pytest.mark.parametrize(
    ("fmt", "subtype", "suffix", "rate"),
    [
        ("WAV", "PCM_16", ".wav", 44100),
        ("FLAC", "PCM_24", ".flac", 44100),
        ("OGG", "VORBIS", ".ogg", 44100),
        ("OGG", "OPUS", ".opus", 48000),
        ("MP3", "MPEG_LAYER_III", ".mp3", 44100),
    ],
)
def test_stereo_files_of_every_container_load_as_clean_24k_mono(tmp_path, fmt, subtype, suffix, rate) -> None:
    speech = voiced(6.0, rate)
    left = np.concatenate([silence(1.0, rate), speech, silence(0.7, rate)])
    stereo = np.stack([left, 0.5 * left], axis=1)
    ref = load_reference(write(tmp_path / f"clip{suffix}", stereo, rate, fmt, subtype))
    assert ref.sample_rate == 24000 and ref.pcm.dtype == np.int16 and ref.pcm.ndim == 1
    assert ref.duration_s == pytest.approx(len(ref.pcm) / 24000)
    assert 5.6 < ref.duration_s < 6.5  # the 1.7 s of silence is gone, up to a 0.1 s margin each side
    assert ref.warnings == []
    assert np.max(np.abs(level(ref))) <= PEAK_LIMIT + 1e-4
    dbfs = active_rms_dbfs(level(ref), 24000)
    assert dbfs == pytest.approx(TARGET_RMS_DBFS, abs=0.5) or np.max(np.abs(level(ref))) == pytest.approx(PEAK_LIMIT)


def test_bytes_and_path_give_the_same_result_and_it_is_deterministic(tmp_path) -> None:
    path = write(tmp_path / "a.flac", voiced(4.0, 22050, seed=3), 22050, "FLAC", "PCM_16")
    a, b = load_reference(path), load_reference(path.read_bytes())
    c = load_reference(str(path))
    np.testing.assert_array_equal(a.pcm, b.pcm)
    np.testing.assert_array_equal(a.pcm, c.pcm)
    assert a.duration_s == b.duration_s


def test_a_real_speech_recording(tmp_path, espeak_writer) -> None:
    """espeak-ng speech when the program is present (CI installs it), else the synthetic voiced signal."""
    path = tmp_path / "speech.wav"
    text = "The quick brown fox jumps over the lazy dog, then it runs into the quiet forest."
    if not espeak_writer(path, text):
        write(path, voiced(5.0, 22050, seed=9), 22050, "WAV", "PCM_16")
    source_seconds = sf.info(path).duration
    ref = load_reference(path)
    assert ref.warnings == []
    assert 2.0 < ref.duration_s <= source_seconds
    assert abs(active_rms_dbfs(level(ref), 24000) - TARGET_RMS_DBFS) < 0.5 or np.max(np.abs(level(ref))) > 0.94
    pcm16 = reference_pcm_at(ref, 16000)
    assert pcm16.shape[0] == 1 and abs(pcm16.shape[1] - round(len(ref.pcm) * 2 / 3)) <= 1
    assert reference_pcm_at(ref, 24000).shape == (1, len(ref.pcm))


def test_long_clips_warn_and_low_rates_warn(tmp_path) -> None:
    ref = load_reference(write(tmp_path / "long.wav", voiced(17.0, 16000), 16000, "WAV", "PCM_16"))
    assert any("17.0 s" in w and "15 s" in w for w in ref.warnings)
    ref = load_reference(write(tmp_path / "phone.wav", voiced(4.0, 8000), 8000, "WAV", "PCM_16"))
    assert any("8000 Hz" in w for w in ref.warnings)


def test_short_clip_is_refused_with_its_length_and_the_limits(tmp_path) -> None:
    pcm = np.concatenate([silence(2.0, 16000), voiced(1.4, 16000), silence(2.0, 16000)])
    with pytest.raises(AudioInputError, match=r"1\.[4-7] s of sound.*file: 5\.4 s.*2-30 s"):
        load_reference(write(tmp_path / "short.wav", pcm, 16000, "WAV", "PCM_16"))


def test_long_clip_is_refused_with_its_length_and_the_limit(tmp_path) -> None:
    with pytest.raises(AudioInputError, match=r"31\.0 s of sound.*limit is 30 s"):
        load_reference(write(tmp_path / "long.flac", voiced(31.0, 16000), 16000, "FLAC", "PCM_16"))
    with pytest.raises(AudioInputError, match=r"limit is 8 s"):
        load_reference(write(tmp_path / "mid.wav", voiced(9.0, 16000), 16000, "WAV", "PCM_16"), max_s=8.0)


def test_huge_files_are_refused_before_decoding(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(reference_audio, "MAX_FILE_SECONDS", 10.0)
    with pytest.raises(AudioInputError, match="files over 10 s are not read"):
        load_reference(write(tmp_path / "hour.wav", silence(12.0, 8000), 8000, "WAV", "PCM_16"))


@pytest.mark.parametrize("offset", [0.0, 0.3])
def test_silence_is_refused_even_with_a_dc_offset(tmp_path, offset) -> None:
    pcm = silence(5.0, 16000) + offset
    with pytest.raises(AudioInputError, match="silent"):
        load_reference(write(tmp_path / "quiet.wav", pcm, 16000, "WAV", "FLOAT"))


def test_square_wave_and_hard_clipping_are_refused(tmp_path) -> None:
    t = np.arange(5 * 16000) / 16000
    square = (0.6 * np.sign(np.sin(2 * np.pi * 150 * t))).astype(np.float32)
    with pytest.raises(AudioInputError, match="clipped"):
        load_reference(write(tmp_path / "square.wav", square, 16000, "WAV", "PCM_16"))
    crushed = np.clip(voiced(5.0, 16000) * 30, -1, 1)
    with pytest.raises(AudioInputError, match=r"clipped.*lower input gain"):
        load_reference(write(tmp_path / "crushed.wav", crushed, 16000, "WAV", "PCM_16"))


def test_mild_clipping_is_a_warning(tmp_path) -> None:
    pcm = voiced(5.0, 16000)
    pcm = np.clip(pcm, -0.85 * np.abs(pcm).max(), 0.85 * np.abs(pcm).max())
    ref = load_reference(write(tmp_path / "mild.wav", pcm, 16000, "WAV", "FLOAT"))
    assert any("clipped" in w for w in ref.warnings)


def test_non_audio_is_refused(tmp_path) -> None:
    text = tmp_path / "notes.wav"
    text.write_text("This is a text file, not a recording.\n" * 50)
    with pytest.raises(AudioInputError, match=r"could not be decoded.*WAV, FLAC, OGG"):
        load_reference(text)
    with pytest.raises(AudioInputError, match="could not be decoded"):
        load_reference(np.random.default_rng(1).bytes(40000))
    with pytest.raises(AudioInputError, match="empty"):
        load_reference(b"")
    (tmp_path / "empty.mp3").write_bytes(b"")
    with pytest.raises(AudioInputError, match="empty"):
        load_reference(tmp_path / "empty.mp3")
    with pytest.raises(AudioInputError, match="does not exist"):
        load_reference(tmp_path / "missing.wav")


def test_corrupt_flac_is_refused(tmp_path) -> None:
    buffer = io.BytesIO()
    sf.write(buffer, voiced(5.0, 16000), 16000, format="FLAC", subtype="PCM_16")
    data = bytearray(buffer.getvalue())
    data[100:] = np.random.default_rng(2).bytes(len(data) - 100)  # header kept, frames destroyed
    with pytest.raises(AudioInputError, match=r"could not be decoded|no audio samples|silent"):
        load_reference(bytes(data))


def test_upstream_processing_keeps_the_channels_untouched_at_the_file_rate(tmp_path) -> None:
    """`upstream`: no mix, DC removal, trim, resample or gain: the 16-bit file's channels sample for sample."""
    rate = 22050
    speech = np.concatenate([silence(1.0, rate), voiced(4.0, rate, seed=4), silence(0.5, rate)]) + 0.01  # DC
    stereo = np.stack([speech, 0.3 * speech], axis=1)
    path = write(tmp_path / "clip.wav", stereo, rate, "WAV", "PCM_16")
    as_written = sf.read(path, dtype="int16")[0]
    ref = load_reference(path, processing="upstream")
    assert ref.sample_rate == rate and ref.pcm.dtype == np.int16
    np.testing.assert_array_equal(ref.pcm, as_written)
    assert ref.duration_s == pytest.approx(5.5, abs=1e-3)  # the silence stays
    mono = load_reference(write(tmp_path / "mono.wav", speech, rate, "WAV", "PCM_16"), processing="upstream")
    assert mono.pcm.shape == (len(speech),)
    clean = load_reference(path)
    assert clean.sample_rate == 24000 and clean.duration_s < 4.5


def test_upstream_stereo_signals_are_channel_0_and_the_channel_mean(tmp_path) -> None:
    """As upstream reads a file: its speech tokenizer channel 0, its `load_wav` (mel, CAMPPlus) the float32
    mean over the channels, each resampled from the file's rate."""
    rate = 22050
    stereo = np.stack([voiced(3.0, rate, seed=5), voiced(3.0, rate, seed=6, amp=0.1)[::-1]], axis=1)
    path = write(tmp_path / "clip.wav", stereo, rate, "WAV", "PCM_16")
    ref = load_reference(path, processing="upstream")
    read = torch.from_numpy(sf.read(path, dtype="float32", always_2d=True)[0].T.copy())  # [channels, T]
    mix = read.mean(dim=0, keepdim=True)
    for sr in (16000, 24000):
        assert torch.equal(reference_pcm_at(ref, sr), resample(mix, rate, sr))
        assert torch.equal(reference_pcm_at(ref, sr, first_channel=True), resample(read[:1], rate, sr))
    assert not torch.equal(mix, read[:1])


def test_upstream_refuses_more_channels_than_it_can_keep_and_a_silent_mix(tmp_path) -> None:
    speech = voiced(3.0, 16000)
    with pytest.raises(AudioInputError, match="9 channels; at most 8 are kept: send a mono or stereo recording"):
        load_reference(
            write(tmp_path / "nine.wav", np.stack([speech] * 9, axis=1), 16000, "WAV", "PCM_16"), processing="upstream"
        )
    cancelled = write(tmp_path / "inverted.wav", np.stack([speech, -speech], axis=1), 16000, "WAV", "PCM_16")
    with pytest.raises(AudioInputError, match=r"the channel mix of .* is silent"):
        load_reference(cancelled, processing="upstream")


def test_reference_samples_are_read_as_a_16_bit_file_is_read(tmp_path) -> None:
    """reference_pcm_at gives k / 32768, the floats soundfile (and upstream's torchaudio) read from the file."""
    rate = 16000
    path = write(tmp_path / "clip.wav", voiced(3.0, rate, seed=2), rate, "WAV", "PCM_16")
    ref = load_reference(path, processing="upstream")
    floats = sf.read(path, dtype="float32")[0]
    np.testing.assert_array_equal(reference_pcm_at(ref, rate)[0].numpy(), floats)


def test_upstream_processing_still_refuses_silence_and_short_clips(tmp_path) -> None:
    with pytest.raises(AudioInputError, match="silent"):
        load_reference(write(tmp_path / "s.wav", silence(3.0, 16000), 16000, "WAV", "PCM_16"), processing="upstream")
    with pytest.raises(AudioInputError, match="2-30 s"):
        load_reference(write(tmp_path / "t.wav", voiced(1.0, 16000), 16000, "WAV", "PCM_16"), processing="upstream")
