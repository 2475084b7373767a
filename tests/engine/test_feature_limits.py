"""The checkpoint's facts that voice features are checked against, read from its configs alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from glmtts_mcp.app.core import checkpoint_rules
from glmtts_mcp.engine.checkpoint.layout import CheckpointError
from glmtts_mcp.engine.feature_limits import FeatureLimits, feature_limits


def test_limits_of_the_tiny_checkpoint(tiny_checkpoint: Path) -> None:
    vocab = json.loads((tiny_checkpoint / "llm" / "config.json").read_text())["vocab_size"]
    assert feature_limits(tiny_checkpoint) == FeatureLimits(
        text_vocab=vocab,
        speech_vocab=32_768,
        speech_tokens_per_s=25.0,
        mel_bins=80,
        mel_frames_per_s=50.0,
        embedding_size=192,
    )


def test_a_missing_checkpoint_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"config\.json"):
        feature_limits(tmp_path / "nowhere")
    assert checkpoint_rules(tmp_path / "nowhere") is None  # the library then checks the schema alone


def test_a_config_without_a_vocabulary_is_refused(tiny_checkpoint: Path, tmp_path: Path) -> None:

    copy = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint, copy)
    config = json.loads((copy / "speech_tokenizer" / "config.json").read_text())
    del config["quantize_vocab_size"]
    (copy / "speech_tokenizer" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="vocabulary size"):
        feature_limits(copy)
