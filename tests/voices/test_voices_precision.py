"""An `upstream` voice keeps its reference at the precision of its source (16-bit, 24-bit or float samples),
losslessly, and re-extraction and archives see the very samples the first clone saw; 16-bit ids are what
they always were."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from voicelib_helpers import RATE, make_tensors, make_voice

from glmtts_mcp.engine.frontend.reference_clip import samples_as_read
from glmtts_mcp.voices import VoiceLibrary
from glmtts_mcp.voices.identity import canonical_pcm, voice_id
from glmtts_mcp.voices.reference_file import decode_reference, encode_reference


def test_16_bit_ids_are_what_they_always_were() -> None:
    """Ids of 16-bit references (mono and stereo, both processings), pinned from the code before 24-bit and
    float references were kept: a voice cloned before keeps its id."""
    rng = np.random.default_rng(21)
    mono = rng.integers(-32768, 32768, 4000).astype(np.int16)
    stereo = rng.integers(-32768, 32768, (4000, 2)).astype(np.int16)
    assert voice_id(mono, 22050, "hi", "clean") == "a9d52597e477e9565c1b"
    assert voice_id(stereo, 44100, None, "clean") == "7a0e0301d93bdb3b9933"
    assert voice_id(mono, 22050, "hi", "upstream") == "c60772a883d8d2d68bb6"
    assert voice_id(stereo, 44100, None, "upstream") == "45b04ce5a44a58254669"


def _source(kind: str) -> np.ndarray:
    """Stereo samples of each kept precision; the float ones reach past 1.0, as a float file may."""
    rng = np.random.default_rng(5)
    if kind == "24-bit":
        return rng.integers(-(1 << 23), 1 << 23, (RATE, 2)).astype(np.int32)
    floats = (0.3 * rng.standard_normal((RATE, 2))).astype(np.float32)
    floats[100, 1] = 1.25
    return floats


FORMS = {"24-bit": ("reference.flac", "FLAC", "PCM_24"), "float": ("reference.wav", "WAV", "FLOAT")}


class Reextractor:
    """An engine stand-in: records the samples it is given, returns new features."""

    def __init__(self) -> None:
        self.calls: list[np.ndarray] = []

    def __call__(self, pcm: np.ndarray, rate: int, transcript: str, language: str | None):
        self.calls.append(pcm)
        return make_tensors(1000 + len(self.calls)), {"speech_tokenizer": 0.5}


@pytest.mark.parametrize("kind", sorted(FORMS))
def test_upstream_reference_is_kept_losslessly_at_its_precision(
    kind: str, open_library: Callable[..., VoiceLibrary], tmp_path: Path
) -> None:
    pcm = _source(kind)
    name, container, subtype = FORMS[kind]
    library = open_library(tmp_path / "a", fingerprint="model-A")
    voice = replace(make_voice(1), duration_s=len(pcm) / RATE)  # what meta.json records: the kept samples' length
    record, _ = library.get_or_create(pcm, RATE, "hi", lambda: voice, processing="upstream")
    folder = library.root / "voices" / record.id
    assert sorted(p.name for p in folder.iterdir()) == ["features.safetensors", "meta.json", name]
    assert library.reference_audio_path(record.id) == folder / name
    info = sf.info(folder / name)
    assert (info.format, info.subtype, info.channels, info.samplerate) == (container, subtype, 2, RATE)
    kept, rate = decode_reference(name, (folder / name).read_bytes())
    assert kept.dtype == pcm.dtype and rate == RATE
    np.testing.assert_array_equal(kept, pcm)
    # any reader of the file (upstream's torchaudio.load included) gets the floats the features came from
    np.testing.assert_array_equal(sf.read(folder / name, dtype="float32")[0], samples_as_read(pcm))
    assert record.id == voice_id(pcm, RATE, "hi", "upstream")
    as_16_bit = np.clip(np.rint(samples_as_read(pcm) * 32768.0), -32768, 32767).astype(np.int16)  # kept before
    assert record.id != voice_id(as_16_bit, RATE, "hi", "upstream")

    engine = Reextractor()  # a new engine: the voice is re-extracted from exactly the kept samples
    refreshed = open_library(tmp_path / "a", fingerprint="model-B", reextract=engine)
    assert refreshed.load_features(record.id).tier == "reextracted"
    assert len(engine.calls) == 1 and engine.calls[0].dtype == pcm.dtype
    np.testing.assert_array_equal(engine.calls[0], pcm)
    assert (folder / name).read_bytes() == encode_reference(pcm, RATE)  # the re-extraction rewrote it as it was

    imported, existed = open_library(tmp_path / "b").import_voice(refreshed.export_voice(record.id, tmp_path))
    assert not existed and imported.id == record.id
    assert (tmp_path / "b" / "voices" / record.id / name).read_bytes() == (folder / name).read_bytes()


def test_sixteen_bit_upstream_references_stay_16_bit_flac(
    open_library: Callable[..., VoiceLibrary], tmp_path: Path
) -> None:
    pcm = np.random.default_rng(6).integers(-32768, 32768, (RATE, 2)).astype(np.int16)
    record, _ = open_library().get_or_create(pcm, RATE, "hi", lambda: make_voice(1), processing="upstream")
    path = open_library().reference_audio_path(record.id)
    assert path.name == "reference.flac" and sf.info(path).subtype == "PCM_16"


def test_samples_a_processing_never_keeps_are_refused() -> None:
    with pytest.raises(ValueError, match="24-bit values"):
        canonical_pcm(np.array([1 << 23, 0], np.int32), "upstream")
    with pytest.raises(ValueError, match="clean reference's PCM must be float in"):
        canonical_pcm(np.zeros(10, np.int32), "clean")
    with pytest.raises(ValueError, match="int16, int32 \\(24-bit values\\) or float32"):
        canonical_pcm(np.zeros(10, np.float64), "upstream")
    with pytest.raises(ValueError, match="NaN or infinite"):
        canonical_pcm(np.array([0.0, np.inf], np.float32), "upstream")
    with pytest.raises(ValueError, match=r"reference.wav must be .* found FLAC/PCM_16"):
        decode_reference("reference.wav", encode_reference(np.zeros(10, np.int16), RATE))
