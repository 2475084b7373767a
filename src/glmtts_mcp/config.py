"""One `Settings` object for the whole process: command-line flags > environment > config file > defaults.

Environment variables carry the prefix `GLMTTS_MCP_` (e.g. `GLMTTS_MCP_CHECKPOINT`); the TOML config file
uses the field names as keys. Its default place is the user config dir (`glmtts-mcp/config.toml`),
overridden by `--config` or `GLMTTS_MCP_CONFIG`.
"""

from __future__ import annotations

import importlib.util
import os
import re
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

APP_NAME = "glmtts-mcp"
ENV_PREFIX = "GLMTTS_MCP_"
CONFIG_ENV = "GLMTTS_MCP_CONFIG"
TOKEN_ENV = "GLMTTS_MCP_TOKEN"

ReturnModePart = Literal["audio", "resource", "link", "path"]
RETURN_MODE_PARTS: tuple[str, ...] = ("audio", "resource", "link", "path")

# Where `Settings()` reads its TOML file from; set by `load_settings` for the duration of one build.
_config_file: ContextVar[Path | None] = ContextVar("glmtts_mcp_config_file", default=None)

# Settings whose flag is not "--" + the field name with dashes.
_FLAG_NAMES = {"allowed_dirs": "--allowed-dir"}


class ConfigError(Exception):
    """The configuration (flags, environment or file) is invalid; the message says which value and why."""


def data_dir() -> Path:
    """Per-user data folder: checkpoint, voices and outputs live here unless configured elsewhere."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def _default_checkpoint() -> Path:
    """Where `glmtts-mcp download` puts the checkpoint (the engine owns that place)."""
    from glmtts_mcp.engine.checkpoint.layout import default_checkpoint_dir  # lazy: pulls in torch

    return default_checkpoint_dir()


def default_config_file() -> Path:
    """The config file read when neither --config nor GLMTTS_MCP_CONFIG names one."""
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "config.toml"


def config_file_in_use(named: Path | None) -> tuple[Path, bool]:
    """The config file a build reads (--config, else GLMTTS_MCP_CONFIG, else the default place), and
    whether it was named explicitly (a named file must exist; the default one may be absent)."""
    if named is not None:
        return named, True
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env).expanduser(), True
    return default_config_file(), False


def flag_name(field: str) -> str:
    """The command-line flag of a Settings field (`allowed_dirs` -> `--allowed-dir`)."""
    return _FLAG_NAMES.get(field, "--" + field.replace("_", "-"))


def env_name(field: str) -> str:
    """The environment variable of a Settings field (`voices_dir` -> `GLMTTS_MCP_VOICES_DIR`)."""
    return ENV_PREFIX + field.upper()


def parse_return_mode(value: str) -> tuple[str, ...]:
    """'audio+path' -> ('audio', 'path'); raises ValueError naming the allowed parts."""
    parts = tuple(p.strip().lower() for p in value.replace(",", "+").split("+") if p.strip())
    bad = [p for p in parts if p not in RETURN_MODE_PARTS]
    if not parts or bad:
        raise ValueError(
            f"invalid return mode {value!r}: use one or more of {', '.join(RETURN_MODE_PARTS)} joined by '+', "
            "e.g. 'audio+path'"
        )
    return tuple(dict.fromkeys(parts))


def _installed(module: str) -> bool:
    """Whether `module` can be imported, found without importing it (the local path never imports ray)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # blocked, or a placeholder in sys.modules
        return False


def replica_range(value: str) -> tuple[int, int]:
    """'2' -> (2, 2), '1-4' -> (1, 4): the fixed count or the autoscaling range of engine replicas."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", str(value))
    low, high = (int(match.group(1)), int(match.group(2) or match.group(1))) if match else (0, 0)
    if not match or low < 1 or high < low:
        raise ValueError(
            f"{value!r} is not a replica count: use a number of replicas (2) or an autoscaling range MIN-MAX (1-4), "
            "at least 1"
        )
    return low, high


class _TomlSource(TomlConfigSettingsSource):
    """pydantic-settings' TOML reader, with our rules on top: a missing default file is no error, a
    missing named file is; an unreadable file or an unknown key is a ConfigError naming the file."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        path, explicit = config_file_in_use(path)
        if explicit and not path.is_file():
            raise ConfigError(f"config file {path} does not exist: create it or drop --config/{CONFIG_ENV}")
        try:
            super().__init__(settings_cls, toml_file=path)
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        unknown = sorted(set(self.toml_data) - set(settings_cls.model_fields))
        if unknown:
            raise ConfigError(
                f"config file {path} has unknown keys {unknown}; known keys: {', '.join(settings_cls.model_fields)}"
            )


def _split_dirs(value: Any) -> Any:
    """GLMTTS_MCP_ALLOWED_DIRS is os.pathsep-separated; lists (flags, TOML) pass through."""
    if isinstance(value, str):
        return [p for p in value.split(os.pathsep) if p.strip()]
    return value


class Settings(BaseSettings):
    """Every knob of the server and the CLI; docs/configuration.md has the table."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    checkpoint: Path = Field(
        default_factory=lambda: _default_checkpoint(),
        description="Folder with the GLM-TTS checkpoint (`glmtts-mcp download` fills it).",
    )
    voices_dir: Path = Field(default_factory=lambda: data_dir() / "voices", description="Folder of the voice library.")
    output_dir: Path = Field(
        default_factory=lambda: data_dir() / "outputs",
        description="Folder where synthesized audio is saved (the audio:// store).",
    )
    allowed_dirs: Annotated[list[Path], NoDecode] = Field(
        default_factory=lambda: [Path.home()],
        description="Folders that input audio and import archives may come from (repeat the flag; "
        "env: os.pathsep-separated).",
    )
    device: str = Field(default="auto", description="Torch device: auto, cpu, cuda, cuda:1, ...")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        default="auto", description="The LLM's dtype (auto: bfloat16 on a GPU that has it, else float32)."
    )
    whisper_model: str = Field(
        default="base", description="Whisper model that transcribes references given without a transcript."
    )
    memory_cache_bytes: int = Field(
        default=512 * 1024**2, ge=0, description="Byte budget of the voice library's in-memory feature tier."
    )
    device_cache_bytes: int = Field(
        default=256 * 1024**2, ge=0, description="Byte budget of the voice features kept on the model's device."
    )
    return_mode: str = Field(
        default="audio+path",
        description="Default return mode of synthesize: audio, resource, link, path or a '+' combination.",
    )
    format: str = Field(default="ogg", description="Default audio format of synthesize (ogg = Ogg/Opus).")
    max_result_bytes: int = Field(
        default=1024 * 1024,
        ge=64 * 1024,
        description="Largest tool result to send inline (Claude Desktop rejects results over 1 MiB); "
        "audio that would not fit falls back to link + path.",
    )
    max_text_chars: int = Field(default=20000, ge=1, description="Longest text synthesize accepts.")
    max_inline_audio_bytes: int = Field(
        default=2 * 1024**2, ge=0, description="Largest base64 `audio` argument accepted (decoded bytes)."
    )
    max_upload_bytes: int = Field(
        default=20 * 1024**2,
        ge=1024,
        description="Largest upload the web faces accept (a reference clip or a voice archive, in bytes).",
    )
    idle_unload_s: float = Field(
        default=600.0, ge=0, description="Unload the model after this many idle seconds (0: never)."
    )
    preload: Literal["lazy", "start"] = Field(
        default="lazy", description="Load the model on first use (lazy) or when the server starts."
    )
    concurrency: int = Field(
        default=1, ge=1, description="Flow + vocoder and clone jobs run at once; the rest queue (the LLM batches)."
    )
    max_queue: int = Field(
        default=32,
        ge=0,
        description="Most engine requests (narrations, clones) waiting for a free slot beside those running; "
        "one more is refused at once (HTTP 503 with Retry-After, an MCP tool error) instead of waiting.",
    )
    # --- batching: the LLM scheduler's batch bound; --concurrency still gates flow, vocoder, clones
    max_batch: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Most narrations whose LLM decodes in one batched step; sizes the KV cache (one slot each).",
    )
    compile_llm: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Compile the LLM's batched decode step with torch.compile / CUDA graphs (auto: on CUDA only).",
    )
    overlap: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Run the next segment's LLM while this segment's flow and vocoder run (auto: on CUDA only).",
    )
    reference_processing: Literal["clean", "upstream"] = Field(
        default="clean",
        description="How a reference clip is prepared and segments are joined: clean (mono mix, DC, silence "
        "trim, -20 dBFS, 20 ms crossfades, symbol-only pieces skipped) or upstream (exactly as GLM-TTS's own "
        "inference: the channels untouched, plain joins, every piece spoken). Part of a voice's id.",
    )
    text_chunk_chars: int = Field(
        default=500,
        ge=0,
        description="Normalize a longer text in pieces of at most this many characters, cut only at sentence ends "
        "the grammars cannot read across, so its memory does not grow with its length (0: the whole text at once, "
        "as GLM-TTS does; docs/text-normalization.md).",
    )
    # --- stream mode: audio inside a segment while the LLM still generates it (docs/configuration.md)
    synthesis_mode: Literal["auto", "stream", "offline"] = Field(
        default="auto",
        description="stream: a segment's audio in chunks while the LLM generates it (upstream's token2wav_stream, "
        "first audio sooner, audio slightly different); offline: one piece per segment, exactly upstream's offline "
        "path; auto: stream where audio is played as it arrives (streamed HTTP responses, say -o -, the MCP Apps "
        "player), offline where "
        "a whole result is returned (MCP tools, files).",
    )
    stream_first_block: int = Field(
        default=25,
        ge=2,
        le=200,
        description="Stream mode: speech tokens in the first chunk (25 Hz; upstream 25). Smaller is heard sooner "
        "and differs more from offline (benchmarks/README.md).",
    )
    stream_first_look_ahead: int = Field(
        default=12,
        ge=0,
        le=199,
        description="Stream mode: tokens at the end of the first chunk held back until the next block is seen "
        "(upstream 12); below --stream-first-block.",
    )
    stream_first_chunk_priority: Literal["on", "off"] = Field(
        default="on",
        description="Stream mode: the LLM batch waits while a narration's first chunk is made, so it is heard "
        "sooner (on a CPU the two share the cores); off: the batch keeps decoding beside it.",
    )
    pronunciation: Literal["text", "phoneme"] = Field(
        default="text",
        description="How a narration reads its text unless the request says: text (upstream's default) or phoneme "
        "(upstream's phoneme-in, --use_phoneme: characters outside its safe list become phoneme tokens; "
        "docs/pronunciation.md).",
    )
    # --- scripts: several voices, one narration (docs/scripts.md)
    script_loudness_lufs: float = Field(
        default=-23.0,
        le=0.0,
        ge=-70.0,
        description="Integrated loudness (ITU-R BS.1770, LUFS) every line of a narrated script is brought to, so "
        "all its voices sound equally loud (0: keep each line's level as the model made it, as GLM-TTS does).",
    )
    max_script_chars: int = Field(
        default=200000,
        ge=1,
        description="Longest script narrate_script accepts (each line also within max_text_chars).",
    )
    # --- scale-out: the engine as replicas on a Ray Serve cluster (docs/scale-out.md)
    engine: Literal["local", "ray"] = Field(
        default="local",
        description="Where the model runs: local (in this process) or ray (replicas on a Ray Serve cluster; "
        "needs the [ray] extra).",
    )
    ray_address: str = Field(
        default="auto",
        description="--engine ray: the cluster: auto (the running one, or RAY_ADDRESS), local (start one in "
        "this process) or ray://host:port.",
    )
    ray_replicas: str = Field(
        default="1", description="--engine ray: engine replicas: a count (2) or an autoscaling range (1-4)."
    )
    ray_gpus_per_replica: float = Field(
        default=0.0, ge=0, description="--engine ray: GPUs each replica reserves (0: CPU replicas; 0.5: two share one)."
    )
    ray_cpus_per_replica: float = Field(
        default=1.0, gt=0, description="--engine ray: CPUs each replica reserves (fractions allowed)."
    )
    ray_voices_per_replica: int = Field(
        default=64, ge=1, description="--engine ray: voices each replica keeps in memory (least recently used leave)."
    )
    output_keep_count: int = Field(default=200, ge=1, description="Most synthesized files kept.")
    output_keep_bytes: int = Field(default=1024**3, ge=0, description="Most bytes of synthesized files kept.")
    output_keep_age_s: float = Field(
        default=7 * 24 * 3600.0, ge=0, description="Synthesized files older than this are deleted (0: no limit)."
    )
    http_keep_alive_s: float = Field(
        default=5.0,
        gt=0,
        description="HTTP: close a connection that stays silent this many seconds between requests.",
    )
    http_header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="HTTP: close a connection whose request line and headers have not all arrived after this many "
        "seconds (a client that connects and sends nothing, or dribbles its headers).",
    )
    http_max_connections: int = Field(
        default=100,
        ge=1,
        description="HTTP: most connections open at once; at the cap a new one closes a waiting one (idle or "
        "unfinished, from the address holding the most), or is refused when all are answering requests (keep it "
        "well under the process's open-file limit, `ulimit -n`).",
    )
    token: SecretStr | None = Field(
        default=None,
        description="Bearer token HTTP clients must send (set it through GLMTTS_MCP_TOKEN, not a flag).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="Log level (stderr).")

    @field_validator("allowed_dirs", mode="before")
    @classmethod
    def _allowed_dirs_split(cls, value: Any) -> Any:
        return _split_dirs(value)

    @field_validator("checkpoint", "voices_dir", "output_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("allowed_dirs")
    @classmethod
    def _resolve_dirs(cls, value: list[Path]) -> list[Path]:
        if not value:
            raise ValueError("at least one allowed folder is needed")
        resolved = [p.expanduser().resolve() for p in value]
        missing = [str(p) for p in resolved if not p.is_dir()]
        if missing:
            raise ValueError(f"no folder {' nor '.join(missing)}: create it, or name an existing folder")
        return resolved

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        value = value.strip().lower()
        if value == "auto":
            return value
        import torch  # lazy: only a configured device needs the parser

        try:
            torch.device(value)
        except RuntimeError:
            raise ValueError(f"{value!r} is not a torch device: use auto, cpu, cuda, cuda:1, mps, ...") from None
        return value

    @field_validator("engine")
    @classmethod
    def _check_engine(cls, value: str) -> str:
        if value == "ray" and not _installed("ray"):
            raise ValueError(
                "ray is not installed: install the extra (pip install 'glmtts-mcp[ray]'), or use --engine local"
            )
        return value

    @field_validator("ray_address")
    @classmethod
    def _check_ray_address(cls, value: str) -> str:
        value = value.strip()
        if value in ("auto", "local") or re.fullmatch(r"ray://[^\s/:]+:\d+", value):
            return value
        raise ValueError(f"{value!r} is not a Ray address: use auto, local or ray://HOST:PORT (e.g. ray://head:10001)")

    @field_validator("stream_first_look_ahead")
    @classmethod
    def _check_look_ahead(cls, value: int, info: ValidationInfo) -> int:
        block = info.data.get("stream_first_block")
        if block is not None and value >= block:
            raise ValueError(f"{value} must be below --stream-first-block ({block}): some of the block must be heard")
        return value

    def streams(self, face_default: bool) -> bool:
        """Whether a narration uses stream mode: the setting, or under auto what the face says suits it."""
        return face_default if self.synthesis_mode == "auto" else self.synthesis_mode == "stream"

    @field_validator("ray_replicas")
    @classmethod
    def _check_ray_replicas(cls, value: str) -> str:
        low, high = replica_range(value)
        return str(low) if low == high else f"{low}-{high}"

    @field_validator("whisper_model")
    @classmethod
    def _check_whisper_model(cls, value: str, info: ValidationInfo) -> str:
        from glmtts_mcp.engine.checkpoint.layout import whisper_model_problem  # lazy: pulls in torch

        if problem := whisper_model_problem(value, info.data.get("checkpoint")):
            raise ValueError(problem)
        return value

    @field_validator("return_mode")
    @classmethod
    def _check_mode(cls, value: str) -> str:
        return "+".join(parse_return_mode(value))

    @field_validator("format")
    @classmethod
    def _check_format(cls, value: str) -> str:
        from glmtts_mcp.engine.runtime.output_encoding import AUDIO_FORMATS  # lazy: pulls in torch

        value = value.strip().lower().lstrip(".")
        if value not in AUDIO_FORMATS:
            raise ValueError(f"unknown audio format {value!r}: use one of {', '.join(AUDIO_FORMATS)}")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls, _config_file.get()))


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build Settings from flags (`overrides`, None values ignored), env and the config file.

    Every value is checked here, once, at start. Raises ConfigError naming each invalid value where
    the user set it (the flag, the environment variable or the config file key) and how to fix it.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    named = config_file.expanduser() if config_file else None
    token = _config_file.set(named)
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(_describe_problem(err, given, named) for err in exc.errors())
        raise ConfigError(f"invalid configuration: {problems}") from exc
    finally:
        _config_file.reset(token)


def _describe_problem(err: Any, flags: dict[str, Any], named_file: Path | None) -> str:
    """One invalid value, introduced by the place the user set it, without pydantic's URL."""
    field = str(err["loc"][0]) if err["loc"] else "settings"
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] != "value_error" and isinstance(err.get("input"), str | int | float):
        message += f" (got {str(err['input'])[:60]!r})"
    return f"{_origin(field, flags, named_file)}: {message}"


def _origin(field: str, flags: dict[str, Any], named_file: Path | None) -> str:
    """Where a setting's value came from, in the words of that place (precedence order)."""
    if field in flags:
        return flag_name(field)
    if env_name(field) in os.environ:
        return env_name(field)
    path, _ = config_file_in_use(named_file)
    try:
        in_file = field in tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        in_file = False
    return f"key `{field}` in {path}" if in_file else f"{field} (default)"
