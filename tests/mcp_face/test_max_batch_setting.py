"""--max-batch: a flag, an env var and a config key; out-of-range values are refused at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from glmtts_mcp.config import ConfigError, load_settings


@pytest.fixture(autouse=True)
def _isolated(no_user_env: None) -> None:
    """Never read the developer's GLMTTS_MCP_* variables or config file."""


def test_max_batch_from_file_env_and_flag(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("max_batch = 6\n")
    assert load_settings().max_batch == 4
    assert load_settings(cfg).max_batch == 6
    monkeypatch.setenv("GLMTTS_MCP_MAX_BATCH", "2")
    assert load_settings(cfg).max_batch == 2
    assert load_settings(cfg, max_batch="8").max_batch == 8


@pytest.mark.parametrize("value", ["0", "65", "many"])
def test_max_batch_out_of_range_is_named(value: str) -> None:
    with pytest.raises(ConfigError, match="--max-batch"):
        load_settings(max_batch=value)
