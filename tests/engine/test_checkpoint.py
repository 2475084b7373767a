"""Checkpoint layout, validation, loading errors, fingerprint, manifest verification and safetensors conversion."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from glmtts_mcp.engine.checkpoint import layout as ck
from glmtts_mcp.engine.checkpoint.download import convert_to_safetensors
from glmtts_mcp.engine.checkpoint.layout import CheckpointError
from glmtts_mcp.engine.checkpoint.loader import load_models
from glmtts_mcp.engine.checkpoint.manifest import sha256_file, verify_checkpoint, write_manifest
from glmtts_mcp.engine.checkpoint.tiny import FLOW_YAML
from glmtts_mcp.engine.types import EngineError


@pytest.fixture
def copy(tiny_checkpoint: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny checkpoint that a test may damage."""
    return Path(shutil.copytree(tiny_checkpoint, tmp_path / "ckpt"))


def _shards(directory: Path) -> list[str]:
    return ck.llm_weight_files(directory)


def test_tiny_checkpoint_is_complete_and_loads(tiny_checkpoint: Path) -> None:
    ck.validate_checkpoint(tiny_checkpoint)
    models = load_models(tiny_checkpoint)
    assert models.flow.config.trans_dim == 64 and models.flow.config.depth == 2 and models.flow.config.heads == 2
    assert models.hift.conv_pre.out_channels == 32
    special = models.special
    assert (special.eoa, special.boa) == (special.pad + 7, special.pad + 14)  # GLM-4 order
    assert special.ate - special.ats == 32767


def test_tiny_llm_mirrors_the_real_layout(tiny_checkpoint: Path) -> None:
    llm = tiny_checkpoint / "llm"
    config = json.loads((llm / "config.json").read_text())
    assert config["tie_word_embeddings"] is True and (config["bos_token_id"], config["eos_token_id"]) == (1, 2)
    weight_map = json.loads((llm / "model.safetensors.index.json").read_text())["weight_map"]
    assert "lm_head.weight" not in weight_map and len(set(weight_map.values())) == 2
    split = {k.split(".")[2] for k in weight_map if k.startswith("model.layers.")}
    layers_in_both = [
        n for n in split if len({weight_map[k] for k in weight_map if k.startswith(f"model.layers.{n}.")}) == 2
    ]
    assert len(layers_in_both) == 1  # one layer is split across the shards, as in the real index


def test_tiny_flow_hift_speech_tokenizer_files_are_official_style(tiny_checkpoint: Path) -> None:
    assert (tiny_checkpoint / "flow" / "config.yaml").read_text() == FLOW_YAML
    flow = torch.load(tiny_checkpoint / "flow" / "flow.pt", weights_only=True)
    assert all(k.startswith("estimator.") for k in flow) and "estimator.rotary_embed.inv_freq" in flow
    hift = torch.load(tiny_checkpoint / "hift" / "hift.pt", weights_only=True)
    assert "conv_pre.weight_g" in hift and "ups.0.weight_v" in hift and "source_downs.0.weight" in hift
    config = json.loads((tiny_checkpoint / "speech_tokenizer" / "config.json").read_text())
    assert config["quantize_encoder_only"] is False and config["encoder_layers"] > config["quantize_position"]
    with safe_open(str(tiny_checkpoint / "speech_tokenizer" / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    extra = f"model.encoder.layers.{config['quantize_position']}.fc1.weight"
    assert {"model.encoder.ema_count", "model.encoder.ema_weight", "model.encoder.layer_norm.weight", extra} <= keys
    assert any(k.startswith("model.decoder.") for k in keys)
    tok = json.loads((tiny_checkpoint / "vq32k-phoneme-tokenizer" / "tokenizer_config.json").read_text())
    contents = {v["content"] for v in tok["added_tokens_decoder"].values()}
    assert {"<|audio_0|>", "<|audio_32767|>", "<|user|>", "<|begin_of_audio|>", "<|B|>"} <= contents


@pytest.mark.parametrize("rel", [*ck.REQUIRED_FILES, "llm/model-00002-of-00002.safetensors"])
def test_each_missing_file_is_named_with_the_fix(copy: Path, rel: str) -> None:
    (copy / rel).unlink()
    with pytest.raises(CheckpointError) as err:
        ck.validate_checkpoint(copy)
    assert rel in str(err.value) and "glmtts-mcp download" in str(err.value) and str(copy) in str(err.value)


def test_an_empty_directory_lists_every_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as err:
        ck.validate_checkpoint(tmp_path)
    for rel in (*ck.REQUIRED_FILES, ck.LLM_INDEX):
        assert rel in str(err.value)


def test_default_checkpoint_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert ck.default_checkpoint_dir() == tmp_path / "data" / "glmtts-mcp" / "checkpoints" / "GLM-TTS"


def test_truncated_pt_is_named(copy: Path) -> None:
    path = copy / "flow" / "flow.pt"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"flow.pt"):
        load_models(copy)


def test_pickled_objects_are_refused(copy: Path) -> None:
    torch.save({"conv_pre.weight": torch.zeros(1), "config": Path("x")}, copy / "hift" / "hift.pt")
    with pytest.raises(CheckpointError, match=r"hift.pt"):
        ck.load_state_dict(copy / "hift" / "hift.pt")


def test_wrong_shapes_are_named(copy: Path) -> None:
    state = torch.load(copy / "hift" / "hift.pt", weights_only=True)
    state["conv_post.bias"] = torch.zeros(3)
    torch.save(state, copy / "hift" / "hift.pt")
    with pytest.raises(CheckpointError, match=r"hift.pt"):
        load_models(copy)


def test_model_wrapper_is_unwrapped(copy: Path) -> None:
    state = torch.load(copy / "hift" / "hift.pt", weights_only=True)
    torch.save({"model": state}, copy / "hift" / "hift.pt")
    assert ck.load_state_dict(copy / "hift" / "hift.pt").keys() == state.keys()


def test_unknown_flow_component_is_named(copy: Path) -> None:
    (copy / "flow" / "config.yaml").write_text(FLOW_YAML + "\n    warp_drive: True")
    with pytest.raises(EngineError, match="warp_drive") as err:
        load_models(copy)
    assert "config.yaml" in str(err.value)


def test_fingerprint_follows_feature_files_only(tiny_checkpoint: Path, copy: Path) -> None:
    assert ck.fingerprint(copy) == ck.fingerprint(tiny_checkpoint)  # a copy elsewhere keeps its voices
    (copy / "hift" / "hift.pt").write_bytes(b"changed vocoder")
    assert ck.fingerprint(copy) == ck.fingerprint(tiny_checkpoint)
    with (copy / "vq32k-phoneme-tokenizer" / "tokenizer.model").open("a") as f:
        f.write("IQ== 99999\n")
    assert ck.fingerprint(copy) != ck.fingerprint(tiny_checkpoint)


def test_manifest_detects_corruption(copy: Path) -> None:
    with pytest.raises(CheckpointError, match=r"manifest.json"):
        verify_checkpoint(copy)
    write_manifest(copy, revision="test")
    verify_checkpoint(copy)
    recorded = json.loads((copy / "manifest.json").read_text())["files"]
    assert set(recorded) >= {*ck.REQUIRED_FILES, ck.LLM_INDEX, *_shards(copy)}
    path = copy / "hift" / "hift.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    verify_checkpoint(copy, full=False)  # same size: only the hash can tell
    with pytest.raises(CheckpointError, match=r"hift/hift.pt has the wrong sha256"):
        verify_checkpoint(copy)
    shard = copy / _shards(copy)[0]
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="bytes, expected"):
        verify_checkpoint(copy, full=False)


def test_conversion_to_safetensors_is_preferred_and_exact(copy: Path) -> None:
    before = {rel: ck.load_state_dict(copy / rel) for rel in (ck.FLOW_WEIGHTS, ck.HIFT_WEIGHTS)}
    write_manifest(copy, revision="test")
    written = convert_to_safetensors(copy, remove_pt=True)
    assert sorted(p.name for p in written) == ["flow.safetensors", "hift.safetensors"]
    assert not (copy / ck.FLOW_WEIGHTS).exists()
    ck.validate_checkpoint(copy)  # a twin stands in for its .pt
    verify_checkpoint(copy)  # the manifest was rewritten with the twins
    for rel, state in before.items():
        after = ck.load_state_dict(copy / rel)
        assert after.keys() == state.keys() and all(torch.equal(after[k], state[k]) for k in state)
    load_models(copy)
    assert convert_to_safetensors(copy) == []  # nothing left to convert


def test_truncated_download_is_caught_before_loading(copy: Path) -> None:
    write_manifest(copy, revision="test")
    shard = copy / _shards(copy)[-1]
    shard.write_bytes(shard.read_bytes()[:-4])
    with pytest.raises(CheckpointError, match=r"model-00002-of-00002.safetensors has"):
        load_models(copy)


def test_download_fetches_exactly_the_engine_files(tiny_checkpoint: Path, tmp_path: Path, monkeypatch) -> None:
    """The orchestration around huggingface_hub, with the hub replaced by the tiny checkpoint on disk.

    (The real hub cannot be reached from the test machines; only the calls we make are checked.)
    """
    import huggingface_hub

    from glmtts_mcp.engine.checkpoint import download

    requested: list[tuple[str, str, str | None]] = []

    class FakeApi:
        def model_info(self, repo: str, revision: str) -> object:
            return type("Info", (), {"sha": "0123abcd"})()

    def fake_download(repo: str, filename: str, *, revision: str | None = None, local_dir=None, tqdm_class=None):
        requested.append((repo, filename, revision))
        source = tiny_checkpoint / ("frontend/campplus.onnx" if repo == download.CAMPPLUS_REPO else filename)
        if local_dir is None:
            return str(source)
        target = Path(local_dir) / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return str(target)

    onnx = tiny_checkpoint / "frontend" / "campplus.onnx"
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(download, "CAMPPLUS_SIZE", onnx.stat().st_size)
    monkeypatch.setattr(download, "CAMPPLUS_SHA256", sha256_file(onnx))
    target = download.download_checkpoint(tmp_path / "dl", whisper_model=None, progress=False)
    hf_files = {f for repo, f, rev in requested if repo == download.HF_REPO}
    assert all(rev == "0123abcd" for repo, _, rev in requested if repo == download.HF_REPO)
    assert hf_files == {*download.HF_FILES, *_shards(tiny_checkpoint)}
    assert (download.CAMPPLUS_REPO, "campplus.onnx", None) in requested
    verify_checkpoint(target)
    assert json.loads((target / "manifest.json").read_text())["revision"] == "0123abcd"

    monkeypatch.setattr(download, "CAMPPLUS_SHA256", "0" * 64)  # a campplus.onnx that is not the expected one
    (target / "frontend" / "campplus.onnx").unlink()
    with pytest.raises(CheckpointError, match=r"campplus.onnx"):
        download.download_checkpoint(target, whisper_model=None, progress=False)


def test_make_tiny_is_deterministic_and_checks_its_size(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from glmtts_mcp.engine.checkpoint.tiny import make_tiny_checkpoint, write_text_tokenizer

    with pytest.raises(ValueError, match="size"):
        make_tiny_checkpoint(tmp_path / "x", size="huge")  # type: ignore[arg-type]
    write_text_tokenizer(tmp_path / "tok", merges=300)
    for name in ("tokenizer.model", "tokenizer_config.json"):
        assert (tmp_path / "tok" / name).read_bytes() == (tiny_checkpoint / ck.TEXT_TOKENIZER_DIR / name).read_bytes()
