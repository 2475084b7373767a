"""Settings: precedence flags > env > TOML file > defaults, fixed names, clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from glmtts_mcp.config import ConfigError, load_settings, parse_return_mode


def test_defaults_are_usable(tmp_path: Path) -> None:
    s = load_settings()
    assert s.allowed_dirs == [Path.home().resolve()]
    assert s.return_mode == "audio+path"
    assert s.format == "ogg"
    assert s.preload == "lazy"
    assert s.token is None
    assert s.max_result_bytes == 1024 * 1024


def test_fixed_env_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    monkeypatch.setenv("GLMTTS_MCP_CHECKPOINT", str(tmp_path / "ck"))
    monkeypatch.setenv("GLMTTS_MCP_VOICES_DIR", str(tmp_path / "voices"))
    monkeypatch.setenv("GLMTTS_MCP_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("GLMTTS_MCP_ALLOWED_DIRS", f"{a}{os.pathsep}{b}")
    monkeypatch.setenv("GLMTTS_MCP_TOKEN", "s3cret")
    s = load_settings()
    assert s.checkpoint == tmp_path / "ck"
    assert s.voices_dir == tmp_path / "voices"
    assert s.output_dir == tmp_path / "out"
    assert s.allowed_dirs == [a.resolve(), b.resolve()]
    assert s.token is not None and s.token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)


def test_precedence_flag_env_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('device = "cuda"\nconcurrency = 3\nformat = "mp3"\nallowed_dirs = ["/tmp"]\n')
    monkeypatch.setenv("GLMTTS_MCP_CONCURRENCY", "2")
    s = load_settings(cfg, format="wav")
    assert s.device == "cuda"  # file
    assert s.concurrency == 2  # env beats file
    assert s.format == "wav"  # flag beats file
    assert s.allowed_dirs == [Path("/tmp").resolve()]


def test_config_file_from_env_and_default_place(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "named.toml"
    cfg.write_text('whisper_model = "small"\n')
    monkeypatch.setenv("GLMTTS_MCP_CONFIG", str(cfg))
    assert load_settings().whisper_model == "small"
    monkeypatch.delenv("GLMTTS_MCP_CONFIG")
    default = tmp_path / "xdg-config" / "glmtts-mcp" / "config.toml"
    default.parent.mkdir(parents=True)
    default.write_text('whisper_model = "tiny"\n')
    assert load_settings().whisper_model == "tiny"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("nonsense = 1\n", "unknown keys ['nonsense']"),
        ("device = \n", "cannot read config file"),
        ('preload = "sometimes"\n', "preload"),
    ],
)
def test_bad_config_file(tmp_path: Path, content: str, needle: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert needle in str(info.value)


def test_missing_named_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_invalid_values_are_named() -> None:
    with pytest.raises(ConfigError, match="--concurrency"):
        load_settings(concurrency="0")
    with pytest.raises(ConfigError, match="--return-mode"):
        load_settings(return_mode="audio+bogus")


def test_every_setting_is_checked_at_start_and_named_where_it_was_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A format the encoder does not know, a missing allowed folder, a device torch does not know: refused
    when the settings are built, with the fix, in the words of the place the value came from."""
    with pytest.raises(ConfigError) as flag:
        load_settings(format="aac")
    assert "--format" in str(flag.value) and "ogg" in str(flag.value) and "mp3" in str(flag.value)
    monkeypatch.setenv("GLMTTS_MCP_FORMAT", "aac")
    with pytest.raises(ConfigError, match="GLMTTS_MCP_FORMAT: unknown audio format 'aac'"):
        load_settings()
    monkeypatch.delenv("GLMTTS_MCP_FORMAT")
    cfg = tmp_path / "c.toml"
    cfg.write_text('format = "aac"\n')
    with pytest.raises(ConfigError) as in_file:
        load_settings(cfg)
    assert f"key `format` in {cfg}" in str(in_file.value)
    with pytest.raises(ConfigError) as missing:
        load_settings(allowed_dirs=[str(tmp_path / "not-there")])
    assert "--allowed-dir" in str(missing.value) and "not-there" in str(missing.value)
    assert "create it" in str(missing.value)
    with pytest.raises(ConfigError, match="--device: 'gpu' is not a torch device"):
        load_settings(device="gpu")
    with pytest.raises(ConfigError, match="--http-max-connections"):
        load_settings(http_max_connections="0")
    assert load_settings(format=".MP3", device="CPU").format == "mp3"


def test_parse_return_mode() -> None:
    assert parse_return_mode("audio+path") == ("audio", "path")
    assert parse_return_mode(" LINK , path+link") == ("link", "path")
    with pytest.raises(ValueError, match="audio, resource, link, path"):
        parse_return_mode("")


def test_fast_path_switches_reach_the_engine(monkeypatch: pytest.MonkeyPatch, tiny_checkpoint: Path) -> None:
    """auto leaves compile/overlap to the engine (CUDA only); on/off force them, from env or flag."""
    from glmtts_mcp.app.core import default_loader

    assert load_settings().overlap == "auto" and load_settings().compile_llm == "auto"
    monkeypatch.setenv("GLMTTS_MCP_OVERLAP", "on")
    settings = load_settings(checkpoint=tiny_checkpoint, device="cpu", dtype="float32", compile_llm="off")
    engine = default_loader(settings)()
    assert engine.overlap is True and engine.compile_llm is False
    auto = default_loader(load_settings(checkpoint=tiny_checkpoint, device="cpu", overlap="auto"))()
    assert auto.overlap is False and auto.compile_llm is False  # CPU: both off under auto
    with pytest.raises(ConfigError, match="overlap"):
        load_settings(overlap="sometimes")


def test_config_file_that_is_not_utf8_names_the_file(tmp_path: Path) -> None:
    """Read through pydantic-settings' TOML source; a file that is not text is still our one-line error."""
    from pydantic_settings import TomlConfigSettingsSource

    from glmtts_mcp import config

    assert issubclass(config._TomlSource, TomlConfigSettingsSource)
    cfg = tmp_path / "latin1.toml"
    cfg.write_bytes('device = "cpu" # caf\xe9\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=f"cannot read config file {cfg}"):
        load_settings(cfg)
    cfg.write_text('allowed_dirs = ["/tmp", "/srv"]\nidle_unload_s = 5\n')
    settings = load_settings(cfg, idle_unload_s=7)  # a flag beats the file
    assert settings.allowed_dirs == [Path("/tmp").resolve(), Path("/srv").resolve()] and settings.idle_unload_s == 7


@pytest.mark.parametrize(
    ("given", "needle"),
    [
        (
            {"ray_address": "http://head:8265"},
            "--ray-address: 'http://head:8265' is not a Ray address: use auto, local",
        ),
        ({"ray_replicas": "0"}, "--ray-replicas: '0' is not a replica count"),
        ({"ray_replicas": "4-2"}, "autoscaling range MIN-MAX (1-4)"),
        ({"ray_cpus_per_replica": "0"}, "--ray-cpus-per-replica"),
        ({"ray_gpus_per_replica": "-1"}, "--ray-gpus-per-replica"),
        ({"engine": "cluster"}, "--engine"),
    ],
)
def test_ray_settings_are_checked_at_start(given: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as failure:
        load_settings(**given)
    assert needle in str(failure.value)


def test_ray_settings_read_well() -> None:
    s = load_settings(engine="ray", ray_address="ray://head:10001", ray_replicas=" 1 - 4 ", ray_cpus_per_replica="0.5")
    assert (s.engine, s.ray_address, s.ray_replicas, s.ray_cpus_per_replica) == ("ray", "ray://head:10001", "1-4", 0.5)
    assert load_settings().engine == "local" and load_settings(ray_replicas="2").ray_replicas == "2"


def test_an_unknown_whisper_model_fails_at_start_naming_the_accepted_values(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_checkpoint: Path
) -> None:
    accepted = r"use one of tiny\.en, tiny, base\.en, base, .*turbo, or the path of a Whisper \.pt file"
    with pytest.raises(ConfigError, match=rf"--whisper-model: unknown whisper model 'bsae': {accepted}"):
        load_settings(whisper_model="bsae")
    monkeypatch.setenv("GLMTTS_MCP_WHISPER_MODEL", "huge")
    with pytest.raises(ConfigError, match=rf"GLMTTS_MCP_WHISPER_MODEL: unknown whisper model 'huge': {accepted}"):
        load_settings()
    monkeypatch.delenv("GLMTTS_MCP_WHISPER_MODEL")
    assert load_settings(whisper_model="small.en").whisper_model == "small.en"  # not downloaded: checked when used
    assert load_settings(whisper_model=str(tmp_path / "mine.pt")).whisper_model == str(tmp_path / "mine.pt")
    # a name whose file is in the checkpoint's whisper folder (the tiny checkpoint's random Whisper)
    assert load_settings(checkpoint=tiny_checkpoint, whisper_model="tiny-random").whisper_model == "tiny-random"
    with pytest.raises(ConfigError, match="unknown whisper model 'tiny-random'"):
        load_settings(checkpoint=tmp_path / "elsewhere", whisper_model="tiny-random")
