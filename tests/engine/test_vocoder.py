"""HiFT loading (both weight-norm key styles, prefixes, strictness), seeded draws and the real-size build."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from glmtts_mcp.engine.models.vocoder import (
    DRAW_RAND_INI,
    DRAW_SINE_NOISE,
    HIFT_24K_CONFIG,
    HiFTGenerator,
    fold_weight_norm,
    load_hift_state_dict,
)

NEW = (".parametrizations.weight.original0", ".parametrizations.weight.original1")
OLD = (".weight_g", ".weight_v")


def _hift(folder: Path, case: dict) -> tuple[dict, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A golden HiFT case: its case.json, weights and io tensors."""
    return case, load_file(str(folder / "weights.safetensors")), load_file(str(folder / "io.safetensors"))


def _restyle(weights: dict[str, torch.Tensor], src: tuple[str, str], dst: tuple[str, str]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in weights.items():
        for a, b in zip(src, dst, strict=True):
            if key.endswith(a):
                key = key[: -len(a)] + b
        out[key] = value
    return out


def _model(case: dict, weights: dict[str, torch.Tensor]) -> HiFTGenerator:
    model = HiFTGenerator.from_config(case["config"])
    load_hift_state_dict(model, weights)
    return model.eval()


def _run(model: HiFTGenerator, io: dict[str, torch.Tensor], frames: int | None = None) -> torch.Tensor:
    """Inference with the recorded draws, optionally on the first `frames` mel frames only (faster)."""
    frames = frames or io["mel"].shape[-1]
    draws = {DRAW_RAND_INI: io[DRAW_RAND_INI], DRAW_SINE_NOISE: io[DRAW_SINE_NOISE][:, : frames * 480]}
    return model.inference(io["mel"][:, :, :frames], draws=draws)[0]


@pytest.mark.parametrize(("name", "src", "dst"), [("hift", NEW, OLD), ("hift_real", OLD, NEW)])
def test_both_weight_norm_key_styles_and_generator_prefix_give_the_same_audio(
    name, src, dst, golden_case: Callable[..., tuple[Path, dict]]
) -> None:
    case, weights, io = _hift(*golden_case(name))
    assert any(k.endswith(src[0]) for k in weights)
    reference = _run(_model(case, weights), io, frames=16)
    restyled = _restyle(weights, src, dst)
    assert not any(k.endswith(src[0]) for k in restyled)
    torch.testing.assert_close(_run(_model(case, restyled), io, frames=16), reference, rtol=0, atol=0)
    prefixed = {f"generator.{k}": v for k, v in weights.items()}
    torch.testing.assert_close(_run(_model(case, prefixed), io, frames=16), reference, rtol=0, atol=0)


def test_folding_matches_torch_weight_norm_for_transposed_convs() -> None:
    conv = torch.nn.utils.parametrizations.weight_norm(torch.nn.ConvTranspose1d(8, 4, 11, 5))
    with torch.no_grad():
        conv.parametrizations.weight.original0.mul_(torch.linspace(0.5, 2, 8).view(8, 1, 1))
    folded = fold_weight_norm(conv.state_dict())
    assert set(folded) == {"weight", "bias"}
    torch.testing.assert_close(folded["weight"], conv.weight.detach(), rtol=1e-6, atol=1e-7)


def test_strict_loading_names_missing_unexpected_and_incomplete_keys(
    golden_case: Callable[..., tuple[Path, dict]],
) -> None:
    case, weights, _ = _hift(*golden_case("hift"))
    model = HiFTGenerator.from_config(case["config"])
    missing = {k: v for k, v in weights.items() if not k.startswith("m_source.")}
    with pytest.raises(KeyError, match=r"missing \['m_source\.l_linear\.bias'"):
        load_hift_state_dict(model, missing)
    with pytest.raises(KeyError, match=r"unexpected \['extra\.weight'\]"):
        load_hift_state_dict(model, {**weights, "extra.weight": torch.zeros(1)})
    incomplete = {k: v for k, v in weights.items() if k != "conv_pre" + NEW[1]}
    with pytest.raises(KeyError, match="conv_pre"):
        load_hift_state_dict(model, incomplete)
    wider = HiFTGenerator.from_config(
        {**case["config"], "ConvRNNF0Predictor": {"num_class": 1, "in_channels": 80, "cond_channels": 48}}
    )
    with pytest.raises(ValueError, match="f0_predictor"):
        load_hift_state_dict(wider, weights)


@pytest.mark.parametrize("name", ["hift", "hift_real"])
def test_generator_seeded_like_upstream_reproduces_upstream_draws(
    name: str, golden_case: Callable[..., tuple[Path, dict]]
) -> None:
    """The product path (no recorded draws) takes the same random numbers upstream took after manual_seed(0)."""
    case, weights, io = _hift(*golden_case(name))
    model = _model(case, weights)
    wav, _f0, source = model.inference(io["mel"], generator=torch.Generator().manual_seed(0))
    tol = case["tolerance"]
    torch.testing.assert_close(wav, io["wav"], rtol=tol["rtol"], atol=tol["atol"])
    torch.testing.assert_close(source, io["source"], rtol=tol["rtol"], atol=tol["atol"])


def test_seeded_inference_is_deterministic_and_seed_dependent(golden_case: Callable[..., tuple[Path, dict]]) -> None:
    case, weights, io = _hift(*golden_case("hift_real"))
    model = _model(case, weights)
    mel = io["mel"][:, :, :20]
    a = model.inference(mel, generator=torch.Generator().manual_seed(7))[0]
    b = model.inference(mel, generator=torch.Generator().manual_seed(7))[0]
    c = model.inference(mel, generator=torch.Generator().manual_seed(8))[0]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.shape == (1, 20 * 480)


def test_batch_and_draw_shape_checks(golden_case: Callable[..., tuple[Path, dict]]) -> None:
    case, weights, io = _hift(*golden_case("hift"))
    model = _model(case, weights)
    mel = io["mel"][:, :, :10].repeat(2, 1, 1)
    wav, f0, source = model.inference(mel, generator=torch.Generator().manual_seed(0))
    assert wav.shape == (2, 4800) and f0.shape == (2, 10) and source.shape == (2, 1, 4800)
    assert wav.abs().max() <= 0.99
    with pytest.raises(ValueError, match="recorded draws"):
        model.inference(mel, draws={DRAW_RAND_INI: io[DRAW_RAND_INI], DRAW_SINE_NOISE: io[DRAW_SINE_NOISE]})


def test_real_configuration_builds_the_checkpoint_layout(golden_case: Callable[..., tuple[Path, dict]]) -> None:
    model = HiFTGenerator.from_config(HIFT_24K_CONFIG)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["conv_pre.weight"] == (512, 80, 7)
    assert shapes["ups.0.weight"] == (512, 256, 16)
    assert shapes["ups.2.weight"] == (128, 64, 7)
    assert shapes["source_downs.0.weight"] == (256, 18, 30)
    assert shapes["conv_post.weight"] == (18, 64, 7)
    assert shapes["f0_predictor.condnet.8.weight"] == (512, 512, 3)
    assert shapes["f0_predictor.classifier.weight"] == (1, 512)
    # docs/checkpoint.md §2.3: about 20.8 M parameters (83 MB fp32)
    assert 20.5e6 < sum(v.numel() for v in model.state_dict().values()) < 21.1e6
    _, golden_weights, _ = _hift(*golden_case("hift"))
    assert set(model.state_dict()) == set(fold_weight_norm(golden_weights))


def test_half_precision_mel_is_accepted_but_half_precision_weights_are_refused(
    golden_case: Callable[..., tuple[Path, dict]],
) -> None:
    case, weights, io = _hift(*golden_case("hift_real"))
    model = _model(case, weights)
    mel = io["mel"][:, :, :8]
    wav = model.inference(mel.bfloat16(), generator=torch.Generator().manual_seed(0))[0]
    assert wav.dtype == torch.float32 and wav.shape == (1, 8 * 480)
    with pytest.raises(ValueError, match="float32"):
        model.to(torch.bfloat16).inference(mel, generator=torch.Generator().manual_seed(0))


def test_22050_hz_source_module_is_refused() -> None:
    cfg = json.loads(json.dumps(HIFT_24K_CONFIG))
    cfg["HiFTGenerator"]["sampling_rate"] = 22050
    with pytest.raises(ValueError, match="22050"):
        HiFTGenerator.from_config(cfg)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_golden_with_a_cpu_generator(golden_case: Callable[..., tuple[Path, dict]]) -> None:
    case, weights, io = _hift(*golden_case("hift_real"))
    model = _model(case, weights).cuda()
    wav, _, _ = model.inference(io["mel"].cuda(), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(wav.cpu(), io["wav"], rtol=case["tolerance"]["rtol"], atol=case["tolerance"]["atol"])
