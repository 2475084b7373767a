"""Audio features beyond the golden cases: mel basis, frame counts, layouts, devices and refusals."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from glmtts_mcp.engine.frontend.audio_features import (
    MEL_24K,
    campplus_fbank,
    mel_basis,
    mel_spectrogram,
    mel_with,
    prompt_mel_features,
    resample,
)


@pytest.fixture
def mel24k_io(golden_case: Callable[..., tuple[Path, dict]]) -> dict[str, torch.Tensor]:
    folder, _ = golden_case("mel24k")
    return load_file(str(folder / "io.safetensors"))


def test_mel_basis_equals_librosa_bitwise(mel24k_io: dict[str, torch.Tensor]) -> None:
    io = mel24k_io
    basis = mel_basis(MEL_24K.sampling_rate, MEL_24K.n_fft, MEL_24K.num_mels, MEL_24K.fmin, MEL_24K.fmax)
    assert torch.equal(basis, io["mel_basis"])


def test_mel_frames_are_samples_over_hop() -> None:
    for n in (4800, 24000, 24480):
        wav = 0.1 * torch.randn(1, n, generator=torch.Generator().manual_seed(n))
        assert mel_with(MEL_24K, wav).shape == (1, 80, n // 480)


def test_mel_is_batched_and_prompt_layout_transposes() -> None:
    wav = 0.1 * torch.randn(2, 9600, generator=torch.Generator().manual_seed(1))
    mel = mel_with(MEL_24K, wav)
    assert mel.shape == (2, 80, 20)
    prompt = prompt_mel_features(wav[:1])
    assert prompt.shape == (1, 20, 80)
    torch.testing.assert_close(prompt[0].T, mel[0], rtol=0, atol=1e-6)


def test_silence_hits_the_log_floor() -> None:
    mel = mel_with(MEL_24K, torch.zeros(1, 4800))
    torch.testing.assert_close(mel, torch.full_like(mel, torch.log(torch.tensor(1e-5)).item()))


def test_other_parameters_build_their_own_basis() -> None:
    wav = 0.1 * torch.randn(1, 32000, generator=torch.Generator().manual_seed(2))
    mel32 = mel_spectrogram(
        wav, n_fft=2560, num_mels=80, sampling_rate=32000, hop_size=640, win_size=2560, fmin=0, fmax=8000
    )
    assert mel32.shape == (1, 80, 50)
    assert mel_basis(32000, 2560, 80, 0, 8000).shape == (80, 1281)


def test_campplus_fbank_is_mean_normalised(mel24k_io: dict[str, torch.Tensor]) -> None:
    io = mel24k_io
    feat = campplus_fbank(io["wav16k"])
    assert feat.shape == (1, 1 + (48000 - 400) // 160, 80)
    torch.testing.assert_close(feat.mean(dim=1), torch.zeros(1, 80), rtol=0, atol=1e-4)


def test_resample_matches_upstream_golden_waveforms_in_length_and_band(mel24k_io: dict[str, torch.Tensor]) -> None:
    io = mel24k_io
    down = resample(io["wav24k"], 24000, 16000)
    assert down.shape == io["wav16k"].shape
    torch.testing.assert_close(down, io["wav16k"], rtol=0, atol=1e-2)
    assert resample(io["wav24k"], 24000, 24000) is io["wav24k"]


def test_layout_refusals() -> None:
    with pytest.raises(ValueError, match=r"\(1, T\)"):
        prompt_mel_features(torch.zeros(2, 4800))
    with pytest.raises(ValueError, match=r"\(1, T\)"):
        campplus_fbank(torch.zeros(4800))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_mel_on_cuda_matches_cpu(mel24k_io: dict[str, torch.Tensor]) -> None:
    io = mel24k_io
    cpu = mel_with(MEL_24K, io["wav24k"])
    gpu = mel_with(MEL_24K, io["wav24k"].cuda()).cpu()
    torch.testing.assert_close(gpu, io["mel"], rtol=1e-4, atol=8e-4)
    torch.testing.assert_close(gpu, cpu, rtol=1e-4, atol=8e-4)
