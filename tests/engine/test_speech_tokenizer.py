"""Speech tokenizer: golden parity, the official folder layout, 30 s segmentation, determinism."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from glmtts_mcp.engine.frontend.whisper_features import WhisperLogMel, feature_extractor
from glmtts_mcp.engine.models.speech_tokenizer import SEGMENT_SAMPLES, SpeechTokenizer
from glmtts_mcp.engine.parity import load_case_tensors, run_case
from glmtts_mcp.engine.parity.speech_tokenizer_cases import RUNNERS
from glmtts_mcp.engine.types import EngineError


def _tokenizer(folder: Path, case: dict) -> SpeechTokenizer:
    weights, _ = load_case_tensors(folder)
    return SpeechTokenizer.from_config(
        case["config"]["WhisperVQConfig"], case["config"]["preprocessor_config_json"], weights
    )


def _write_official_folder(path: Path, folder: Path, case: dict) -> Path:
    """A speech_tokenizer/ folder as the checkpoint ships it (from the golden case `folder`): the full
    config, decoder and EMA tensors included."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(case["config"]["WhisperVQConfig"]))
    (path / "preprocessor_config.json").write_text(json.dumps(case["config"]["preprocessor_config_json"]))
    save_file(load_file(str(folder / "weights.safetensors")), str(path / "model.safetensors"))
    return path


@pytest.mark.parametrize("name", ["speech_tokenizer", "speech_tokenizer_real"])
def test_golden_case_passes(name: str, golden_case: Callable[..., tuple[Path, dict]]) -> None:
    folder, _ = golden_case(name)
    result = run_case(folder, RUNNERS)
    assert result.passed, result.detail
    assert "tokens exact" in result.detail


def test_features_match_transformers_extractor_on_a_padded_batch(golden_case: Callable[..., tuple[Path, dict]]) -> None:
    """Two segments of different lengths, padded to the longer one rounded up, as upstream batches them."""
    from transformers import WhisperFeatureExtractor

    _, case = golden_case("speech_tokenizer_real")
    pre = case["config"]["preprocessor_config_json"]
    rng = np.random.default_rng(3)
    segments = [rng.standard_normal(9000).astype(np.float32) * 0.1, rng.standard_normal(4321).astype(np.float32) * 0.3]
    reference = WhisperFeatureExtractor(**pre)(
        segments,
        sampling_rate=16000,
        return_attention_mask=True,
        return_tensors="pt",
        padding="longest",
        pad_to_multiple_of=640,
    )
    features, mask = WhisperLogMel(feature_extractor(pre))([torch.from_numpy(s) for s in segments], 640)
    assert features.shape == reference["input_features"].shape == (2, 128, 60)
    torch.testing.assert_close(features, reference["input_features"], atol=1e-5, rtol=0)
    assert torch.equal(mask.long(), reference["attention_mask"].long())


def test_from_dir_official_layout_gives_golden_tokens(
    tmp_path: Path, golden_case: Callable[..., tuple[Path, dict]]
) -> None:
    folder, case = golden_case("speech_tokenizer_real")
    config = case["config"]["WhisperVQConfig"]
    # the folder carries what the loader must ignore: more layers than kept, a final layer_norm, decoder, EMA buffers
    assert config["quantize_encoder_only"] is False and config["encoder_layers"] > config["quantize_position"]
    weights = load_file(str(folder / "weights.safetensors"))
    assert {"model.encoder.ema_weight", "model.encoder.layer_norm.weight", "model.encoder.layers.3.fc1.weight"} <= set(
        weights
    )
    assert not torch.equal(weights["model.encoder.ema_weight"], weights["model.encoder.codebook.weight"])
    tokenizer = SpeechTokenizer.from_dir(_write_official_folder(tmp_path / "speech_tokenizer", folder, case))
    assert len(tokenizer.encoder.layers) == config["quantize_position"]
    io = load_file(str(folder / "io.safetensors"))
    assert torch.equal(tokenizer.tokenize(io["wav16k"]), io["speech_tokens"][0])


@pytest.mark.parametrize("missing", ["config.json", "preprocessor_config.json", "model.safetensors"])
def test_from_dir_names_a_missing_file(
    tmp_path: Path, missing: str, golden_case: Callable[..., tuple[Path, dict]]
) -> None:
    path = _write_official_folder(tmp_path / "speech_tokenizer", *golden_case("speech_tokenizer_real"))
    (path / missing).unlink()
    with pytest.raises(EngineError, match=missing.replace(".", r"\.")):
        SpeechTokenizer.from_dir(path)


def test_from_dir_rejects_weights_missing_an_encoder_tensor(
    tmp_path: Path, golden_case: Callable[..., tuple[Path, dict]]
) -> None:
    path = _write_official_folder(tmp_path / "speech_tokenizer", *golden_case("speech_tokenizer_real"))
    weights = load_file(str(path / "model.safetensors"))
    del weights["model.encoder.layers.2.fc2.bias"]
    save_file(weights, str(path / "model.safetensors"))
    with pytest.raises(EngineError, match=r"missing \['model\.encoder\.layers\.2\.fc2\.bias'\]"):
        SpeechTokenizer.from_dir(path)


def test_weights_without_ema_buffers_load(golden_case: Callable[..., tuple[Path, dict]]) -> None:
    folder, case = golden_case("speech_tokenizer_real")
    weights = {k: v for k, v in load_file(str(folder / "weights.safetensors")).items() if "ema_" not in k}
    tokenizer = SpeechTokenizer.from_config(
        case["config"]["WhisperVQConfig"], case["config"]["preprocessor_config_json"], weights
    )
    io = load_file(str(folder / "io.safetensors"))
    assert torch.equal(tokenizer.tokenize(io["wav16k"]), io["speech_tokens"][0])


@pytest.mark.slow
def test_long_audio_is_tokenized_in_30_s_segments(golden_case: Callable[..., tuple[Path, dict]]) -> None:
    folder, case = golden_case("speech_tokenizer_real")
    tokenizer = _tokenizer(folder, case)  # 25 tokens/s, 640 samples per token
    wav = load_file(str(folder / "io.safetensors"))["wav16k"]
    audio = wav[0].repeat(math.ceil((2 * SEGMENT_SAMPLES + 70000) / wav.shape[1]))[: 2 * SEGMENT_SAMPLES + 70000]
    tokens = tokenizer.tokenize(audio[None])

    segments = [audio[:SEGMENT_SAMPLES], audio[SEGMENT_SAMPLES : 2 * SEGMENT_SAMPLES], audio[2 * SEGMENT_SAMPLES :]]
    assert tokens.shape == (sum(math.ceil(s.numel() / 640) for s in segments),) == (750 + 750 + 110,)
    # the same three segments run as one batch padded to the longest, as upstream's batch
    _, _, out = tokenizer.encode(segments)
    assert out.token_ids.shape == (3, 750)
    expected = torch.cat([out.token_ids[i][out.token_mask[i]] for i in range(3)])
    assert torch.equal(tokens, expected)
    # each full 30 s segment gives the tokens it gives on its own (750 each at 25 Hz)
    assert torch.equal(tokens[:750], tokenizer.tokenize(audio[None, :SEGMENT_SAMPLES]))
    assert torch.equal(tokens[750:1500], tokenizer.tokenize(audio[None, SEGMENT_SAMPLES : 2 * SEGMENT_SAMPLES]))


def test_block_causal_mask_with_key_padding(golden_case: Callable[..., tuple[Path, dict]]) -> None:
    """Each frame sees every earlier frame and its whole block, never a padded key."""
    encoder = _tokenizer(*golden_case("speech_tokenizer")).encoder
    frame_mask = torch.tensor([[True, True, True, True, False]])
    allowed = encoder._allowed(frame_mask, block_size=2)
    expected = torch.tensor(
        [
            [1, 1, 0, 0, 0],
            [1, 1, 0, 0, 0],
            [1, 1, 1, 1, 0],
            [1, 1, 1, 1, 0],
            [1, 1, 1, 1, 0],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(allowed[0, 0], expected)
    assert torch.equal(encoder._allowed(frame_mask, block_size=None)[0, 0], frame_mask.expand(5, 5))


def test_tokenize_is_deterministic(golden_case: Callable[..., tuple[Path, dict]]) -> None:
    folder, case = golden_case("speech_tokenizer")
    wav = load_file(str(folder / "io.safetensors"))["wav16k"]
    first = _tokenizer(folder, case).tokenize(wav)
    again = _tokenizer(folder, case)
    assert torch.equal(first, again.tokenize(wav))
    assert torch.equal(first, again.tokenize(wav))
    assert first.dtype == torch.int64


def test_short_and_empty_audio(golden_case: Callable[..., tuple[Path, dict]]) -> None:
    tokenizer = _tokenizer(*golden_case("speech_tokenizer_real"))
    assert tokenizer.tokenize(torch.zeros(1, 0)).shape == (0,)
    assert tokenizer.tokenize(torch.randn(1, 100) * 0.1).shape == (1,)


def test_bfloat16_keeps_a_float32_codebook(golden_case: Callable[..., tuple[Path, dict]]) -> None:
    folder, case = golden_case("speech_tokenizer_real")
    weights, io = load_case_tensors(folder)
    tokenizer = SpeechTokenizer.from_config(
        case["config"]["WhisperVQConfig"], case["config"]["preprocessor_config_json"], weights, dtype=torch.bfloat16
    )
    assert tokenizer.encoder.layers[0].fc1.weight.dtype == torch.bfloat16
    assert tokenizer.encoder.codebook.weight.dtype == torch.float32
    assert torch.equal(tokenizer.encoder.codebook.weight, weights["model.encoder.codebook.weight"])
    _, _, out = tokenizer.encode([io["wav16k"][0]])
    assert out.distances.dtype == torch.float32
    tokens = tokenizer.tokenize(io["wav16k"])
    assert tokens.shape == io["speech_tokens"][0].shape
