"""Flow decoder: golden parity, strict loading, config parsing as data, determinism, bf16."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from glmtts_mcp.engine.checkpoint.tiny import FLOW_YAML
from glmtts_mcp.engine.models.flow import Flow, load_flow_config
from glmtts_mcp.engine.parity import find_cases, load_case_tensors
from glmtts_mcp.engine.parity.flow_cases import RUNNERS, flow_config_from_case
from glmtts_mcp.engine.types import EngineError

TINY = {
    "speech_token_dim": 16,
    "vocab_size": 64,
    "input_frame_rate": 25,
    "mel_framerate": 50,
    "trans_dim": 32,
    "depth": 1,
    "heads": 2,
    "dim_head": 16,
    "spkr_emb_adaLN": True,
    "speech_token_cfg": False,
    "remove_spkr_concat_condition": True,
}


def _tiny_inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "prompt_tokens": torch.randint(0, 64, (1, 6), generator=g),
        "prompt_mel": torch.randn(1, 12, 80, generator=g),
        "tokens": torch.randint(0, 64, (1, 9), generator=g),
        "speaker_embedding": torch.randn(1, 192, generator=g),
    }


def _tiny_flow() -> Flow:
    torch.manual_seed(1234)
    return Flow.from_config(TINY).eval()


@pytest.mark.slow
def test_every_golden_flow_case_passes(golden_dir: Path) -> None:
    """Dispatch on kind, so other case sets of kind `flow` are run too."""
    folders = [f for f in find_cases(golden_dir) if json.loads((f / "case.json").read_text())["kind"] == "flow"]
    assert {"flow", "flow_real"} <= {f.name for f in folders}
    for folder in folders:
        case = json.loads((folder / "case.json").read_text())
        result = RUNNERS["flow"](folder, case)
        assert result.passed, f"{folder.name}: max_abs {result.max_abs:.3g} ({result.detail})"
        assert result.max_abs < case["tolerance"]["atol"]


def test_real_flags_feat_len_truncates_like_python(golden_case: Callable[..., tuple[Path, dict]]) -> None:
    _folder, case = golden_case("flow_real")
    flow = Flow(flow_config_from_case(case["config"]))
    assert flow.frame_count(57) == 113  # 57/25*50 = 113.99999999999999
    assert flow.frame_count(55) == 110


def test_missing_key_error_names_the_key(golden_case: Callable[..., tuple[Path, dict]]) -> None:
    folder, case = golden_case("flow_real")
    weights, _ = load_case_tensors(folder)
    del weights["estimator.rotary_embed.inv_freq"]
    flow = Flow(flow_config_from_case(case["config"]))
    with pytest.raises(EngineError, match=r"missing keys \[estimator\.rotary_embed\.inv_freq\]"):
        flow.load_official_state_dict(weights)


def test_wrong_shape_and_unexpected_keys_are_named(golden_case: Callable[..., tuple[Path, dict]]) -> None:
    folder, _case = golden_case("flow")  # has spk_embed_affine_layer: unexpected for the real flags
    weights, _ = load_case_tensors(folder)
    real_case = golden_case("flow_real")[1]
    with pytest.raises(EngineError) as err:
        Flow(flow_config_from_case(real_case["config"])).load_official_state_dict(weights)
    message = str(err.value)
    assert "unexpected keys [spk_embed_affine_layer.bias, spk_embed_affine_layer.weight]" in message
    assert "estimator.norm_out.linear.weight: checkpoint (128, 64) vs model (128, 256)" in message
    assert "flow/config.yaml" in message  # says how to fix it


def test_wrapped_checkpoint_is_unwrapped(golden_case: Callable[..., tuple[Path, dict]]) -> None:
    folder, case = golden_case("flow")
    weights, _ = load_case_tensors(folder)
    flow = Flow(flow_config_from_case(case["config"]))
    flow.load_official_state_dict({"model": weights})
    assert torch.equal(flow.spk_embed_affine_layer.weight, weights["spk_embed_affine_layer.weight"])


def test_real_yaml_is_read_as_data(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(FLOW_YAML)
    cfg = load_flow_config(path)
    assert cfg["spkr_emb_adaLN"] is True and cfg["speech_token_cfg"] is False
    assert cfg["remove_spkr_concat_condition"] is True
    assert (cfg["mel_dim"], cfg["mel_framerate"], cfg["input_frame_rate"]) == (80, 50, 25)
    assert (cfg["speech_token_dim"], cfg["vocab_size"]) == (512, 100000)
    assert (cfg["trans_dim"], cfg["depth"], cfg["heads"], cfg["dim_head"]) == (768, 18, 12, 64)
    assert (cfg["ff_mult"], cfg["conv_layers"], cfg["inference_cfg_rate"], cfg["t_scheduler"]) == (2, 4, 0.7, "cosine")


def test_real_config_builds_the_checkpoint_shapes(tmp_path: Path) -> None:
    """Shapes and parameter count of flow.pt as derived in docs/checkpoint.md §2.2 (built on meta, no memory)."""
    path = tmp_path / "config.yaml"
    path.write_text(FLOW_YAML)
    with torch.device("meta"):
        flow = Flow.from_config(load_flow_config(path))
    shapes = {k: tuple(v.shape) for k, v in flow.state_dict().items()}
    assert shapes["estimator.text_emb_layer.text_embed.weight"] == (100001, 512)
    assert shapes["estimator.emb_concator.proj.weight"] == (768, 672)
    assert shapes["estimator.transformer_blocks.17.attn_norm.linear.weight"] == (4608, 960)
    assert shapes["estimator.norm_out.linear.weight"] == (1536, 960)
    assert shapes["estimator.rotary_embed.inv_freq"] == (32,)
    assert not any(k.startswith("spk_embed_affine_layer") for k in shapes)
    assert sum(v.numel() for v in flow.state_dict().values()) == 225_299_824  # 32 of them: inv_freq


def test_yaml_tags_are_never_instantiated(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "config.yaml"
    path.write_text(f"flow: !new:os.system\n    mel_dim: 80\nx: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(EngineError, match="cannot read flow config"):
        load_flow_config(path)
    assert not marker.exists()
    path.write_text("flow: !new:subprocess.Popen\n    mel_dim: 80\n")
    assert load_flow_config(path)["mel_dim"] == 80  # the tag named a callable; only its mapping was read


def test_unknown_yaml_key_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(FLOW_YAML + "\n    trans_dim: 1024\n")
    with pytest.raises(EngineError, match=rf"{path}.*unknown Flow argument\(s\) \['trans_dim'\]"):
        load_flow_config(path)


def test_case_config_and_flat_config_build_the_same_model(golden_case: Callable[..., tuple[Path, dict]]) -> None:
    _, case = golden_case("flow_real")
    flat = {**case["config"]["Flow"], **case["config"]["DiT_override_for_tiny"]}
    assert Flow(flow_config_from_case(case["config"])).config == Flow.from_config(flat).config


def test_seeded_generator_is_deterministic() -> None:
    flow = _tiny_flow()
    inputs = _tiny_inputs()

    def run(seed: int) -> torch.Tensor:
        return flow.inference(**inputs, n_timesteps=4, generator=torch.Generator().manual_seed(seed))

    first, again, other = run(7), run(7), run(8)
    assert first.shape == (1, 80, flow.frame_count(15) - 12)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


def test_recorded_noise_equals_generator_draw() -> None:
    flow = _tiny_flow()
    inputs = _tiny_inputs()
    noise = torch.randn(1, flow.frame_count(15), 80, generator=torch.Generator().manual_seed(3))
    drawn = flow.inference(**inputs, n_timesteps=3, generator=torch.Generator().manual_seed(3))
    replayed = flow.inference(**inputs, n_timesteps=3, noise=noise)
    assert torch.equal(drawn, replayed)


def test_cfg_rate_zero_runs_only_the_conditional_pass() -> None:
    flow = _tiny_flow()
    seen: list[torch.Tensor | None] = []
    flow.inference(
        **_tiny_inputs(),
        n_timesteps=2,
        cfg_rate=0.0,
        generator=torch.Generator().manual_seed(0),
        on_velocity=lambda step, vc, vu: seen.append(vu),
    )
    assert seen == [None, None]


def test_bad_inputs_are_rejected() -> None:
    flow = _tiny_flow()
    inputs = _tiny_inputs()
    with pytest.raises(ValueError, match="outside"):
        flow.inference(**{**inputs, "tokens": torch.tensor([[3, -2]])})
    with pytest.raises(ValueError, match="speaker_embedding"):
        flow.inference(**{**inputs, "speaker_embedding": torch.randn(1, 80)})
    with pytest.raises(ValueError, match="noise"):
        flow.inference(**inputs, noise=torch.randn(1, 5, 80))


@pytest.mark.parametrize(("dtype", "bound"), [(torch.bfloat16, 0.05), (torch.float16, 0.01)])
@pytest.mark.slow
def test_half_precision_stays_close_to_fp32(
    dtype: torch.dtype, bound: float, golden_case: Callable[..., tuple[Path, dict]]
) -> None:
    """Measured max |mel - fp32 mel| on flow_real: bf16 0.012, fp16 0.0015 (mel spans about +-4.5)."""
    folder, case = golden_case("flow_real")
    weights, io = load_case_tensors(folder)
    args = {
        "prompt_tokens": io["prompt_token"],
        "prompt_mel": io["prompt_feat"],
        "tokens": io["token"],
        "speaker_embedding": io["embedding"],
        "noise": io["rng_x0"],
    }
    flow = Flow(flow_config_from_case(case["config"])).eval()
    flow.load_official_state_dict(weights)
    fp32 = flow.inference(**args)
    flow = flow.to(dtype)
    assert flow.estimator.rotary_embed.inv_freq.dtype == torch.float32
    half = flow.inference(**args)
    assert half.dtype == torch.float32  # the ODE state stays float32
    deviation = float((half - fp32).abs().max())
    assert deviation < bound, deviation


def test_wrong_value_type_names_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(FLOW_YAML.replace("mel_dim: 80", "mel_dim: eighty"))
    with pytest.raises(EngineError, match=r"mel_dim must be int, got 'eighty'"):
        load_flow_config(path)
    path.write_text("model: !new:flow.flow.Flow\n    mel_dim: 80\n")
    with pytest.raises(EngineError, match="expected a mapping `flow:`"):
        load_flow_config(path)
