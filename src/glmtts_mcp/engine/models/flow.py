"""GLM-TTS flow matching: speech tokens + prompt mel + speaker -> mel, by an Euler ODE with CFG.

Clean-room counterpart of upstream flow/flow.py `Flow.inference_with_cache`: offline (`inference`,
`is_causal=False`, no cache) as `Token2Wav.token2wav_with_cache` calls it, and streaming
(`inference_chunk`: block-causal mask, per-step ODE state carried over) as `token2wav_stream` calls it. The
velocity network is `dit.DiT`. Configuration is read as data (`load_flow_config`), never by
instantiating the `!new:` tag that upstream's HyperPyYAML file carries.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from glmtts_mcp.engine.models.dit import SPEAKER_DIM, DiT, block_causal_mask
from glmtts_mcp.engine.types import EngineError

# Keyword arguments of upstream's Flow constructor and their defaults there. Training-only ones
# (calc_prompt_mel_loss, loss_type, use_mdt) are accepted and have no effect at inference.
FLOW_KWARG_DEFAULTS: dict[str, Any] = {
    "speech_token_dim": 512,
    "vocab_size": 100000,
    "input_frame_rate": 12.5,
    "spk_embed_dim": 80,
    "mel_dim": 80,
    "big_model": False,
    "spkr_emb_adaLN": False,
    "calc_prompt_mel_loss": True,
    "speech_token_cfg": True,
    "use_wavlm_emb": False,
    "remove_spkr_concat_condition": False,
    "t_scheduler": "cosine",
    "loss_type": "l2",
    "use_mdt": False,
    "mel_framerate": 86,
}

T_SCHEDULERS = ("cosine", "linear")  # upstream: "cosine" warps t, any other name leaves it linear

# Upstream's velocity ODE uses this CFG strength; its DiT size comes from big_model.
DEFAULT_INFERENCE_CFG_RATE = 0.7
DIT_SIZES = {False: (768, 18, 12), True: (1024, 22, 16)}  # (trans_dim, depth, heads) by big_model
DIT_FIXED = {"ff_mult": 2, "conv_layers": 4, "dim_head": 64}  # hard-coded upstream


@dataclass(frozen=True)
class FlowConfig:
    """Every value the flow model depends on, upstream defaults filled in."""

    speech_token_dim: int
    vocab_size: int
    input_frame_rate: float
    spk_embed_dim: int
    mel_dim: int
    big_model: bool
    spkr_emb_adaLN: bool
    calc_prompt_mel_loss: bool
    speech_token_cfg: bool
    use_wavlm_emb: bool
    remove_spkr_concat_condition: bool
    t_scheduler: str
    loss_type: str
    use_mdt: bool
    mel_framerate: float
    trans_dim: int
    depth: int
    heads: int
    dim_head: int
    ff_mult: int
    conv_layers: int
    inference_cfg_rate: float

    @classmethod
    def from_flat(cls, values: Mapping[str, Any], source: str = "flow config") -> FlowConfig:
        """Merge `values` over upstream's defaults; unknown names are an error naming `source`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise EngineError(f"{source}: unknown flow setting(s) {unknown}; known settings are {sorted(known)}")
        merged: dict[str, Any] = {**FLOW_KWARG_DEFAULTS, **values}
        trans_dim, depth, heads = DIT_SIZES[bool(merged["big_model"])]
        merged = {
            "trans_dim": trans_dim,
            "depth": depth,
            "heads": heads,
            **DIT_FIXED,
            "inference_cfg_rate": DEFAULT_INFERENCE_CFG_RATE,
            **merged,
        }
        config = cls(**merged)
        config.check(source)
        return config

    @property
    def condition_dim(self) -> int:
        """Mel condition, plus the projected speaker embedding unless upstream removed that concat."""
        return self.mel_dim if self.remove_spkr_concat_condition else self.mel_dim + self.spk_embed_dim

    def check(self, source: str) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            allowed = _FIELD_TYPES[str(field.type)]
            if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
                raise EngineError(f"{source}: {field.name} must be {field.type}, got {value!r}")
        if self.use_wavlm_emb:
            raise EngineError(
                f"{source}: use_wavlm_emb=True needs a WavLM speaker embedding, which this engine "
                "does not compute; use a checkpoint trained without it"
            )
        if self.t_scheduler not in T_SCHEDULERS:
            raise EngineError(f"{source}: t_scheduler {self.t_scheduler!r} is not one of {T_SCHEDULERS}")
        if self.heads < 1 or self.dim_head % 2:
            raise EngineError(f"{source}: dim_head must be even and heads >= 1 (got {self.heads}x{self.dim_head})")
        if self.trans_dim % 16:
            raise EngineError(f"{source}: trans_dim {self.trans_dim} must be a multiple of 16 (grouped conv)")


_FIELD_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


class _TagsAsMappings(yaml.SafeLoader):
    """Safe YAML that reads any `!tag` node as its plain value, so nothing named by a tag is imported."""


def _untagged(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(cast(yaml.ScalarNode, node))  # the only other kind of node


_TagsAsMappings.add_multi_constructor("!", _untagged)


def load_flow_config(path: Path) -> dict[str, Any]:
    """Read ckpt/flow/config.yaml (`flow: !new:flow.flow.Flow` + kwargs) as data; defaults filled in."""
    try:
        document = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_TagsAsMappings)
    except (OSError, yaml.YAMLError) as exc:
        raise EngineError(f"cannot read flow config {path}: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("flow"), dict):
        raise EngineError(f"{path}: expected a mapping `flow:` holding the Flow settings, got {document!r}")
    extra = sorted(set(document) - {"flow"})
    if extra:
        raise EngineError(f"{path}: unexpected top-level key(s) {extra}; only `flow` is read")
    kwargs = document["flow"]
    unknown = sorted(set(kwargs) - set(FLOW_KWARG_DEFAULTS))
    if unknown:
        raise EngineError(
            f"{path}: unknown Flow argument(s) {unknown}; upstream's Flow accepts {sorted(FLOW_KWARG_DEFAULTS)}"
        )
    return dataclasses.asdict(FlowConfig.from_flat(kwargs, str(path)))


@dataclass
class StepStates:
    """The ODE state at the input of each Euler step of one streaming flow call (upstream's step2cache).

    `keep`: how many leading frames (prompt included) the next call takes from here; the caller sets it.
    """

    states: list[torch.Tensor]
    keep: int


VelocityHook = Callable[[int, torch.Tensor, torch.Tensor | None], None]
"""on_velocity(step, v_cond, v_uncond): step counts from 1; v_uncond is None without CFG."""


class Flow(nn.Module):
    """The flow decoder: holds the DiT (`estimator`) and, when configured, the speaker projection."""

    def __init__(self, config: FlowConfig) -> None:
        super().__init__()
        self.config = config
        if not config.remove_spkr_concat_condition:
            self.spk_embed_affine_layer = nn.Linear(SPEAKER_DIM, config.spk_embed_dim)
        self.estimator = DiT(
            trans_dim=config.trans_dim,
            depth=config.depth,
            heads=config.heads,
            dim_head=config.dim_head,
            ff_mult=config.ff_mult,
            mel_dim=config.mel_dim,
            text_vocab_size=config.vocab_size,
            text_emb_dim=config.speech_token_dim,
            conv_layers=config.conv_layers,
            condition_dim=config.condition_dim,
            speaker_adaln=config.spkr_emb_adaLN,
        )

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> Flow:
        """Build from `load_flow_config`'s dict plus the sizes read from the weights."""
        return cls(FlowConfig.from_flat(cfg))

    def load_official_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Load flow.pt's tensors by upstream's key names, strictly; errors list every mismatch."""
        if set(state_dict) == {"model"} and isinstance(state_dict["model"], Mapping):
            state_dict = state_dict["model"]  # upstream unwraps {"model": state_dict} too
        expected = self.state_dict()
        missing = sorted(set(expected) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(expected))
        wrong_shape = sorted(
            f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
            for k, v in expected.items()
            if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
        )
        if missing or unexpected or wrong_shape:
            problems = []
            if missing:
                problems.append(f"missing keys {_abbreviate(missing)}")
            if unexpected:
                problems.append(f"unexpected keys {_abbreviate(unexpected)}")
            if wrong_shape:
                problems.append(f"shape mismatches {_abbreviate(wrong_shape)}")
            raise EngineError(
                "flow weights do not match the flow config: "
                + "; ".join(problems)
                + ". Use flow.pt with the flow/config.yaml of the same checkpoint."
            )
        self.load_state_dict(dict(state_dict), strict=True)

    @property
    def _dtype(self) -> torch.dtype:
        return self.estimator.proj_out.weight.dtype

    @property
    def _state_dtype(self) -> torch.dtype:
        return torch.promote_types(self._dtype, torch.float32)

    @property
    def _device(self) -> torch.device:
        return self.estimator.proj_out.weight.device

    def frame_count(self, n_tokens: int) -> int:
        """Mel frames for n_tokens: Python float arithmetic truncated, as upstream (57 tokens -> 113)."""
        return int(n_tokens / self.config.input_frame_rate * self.config.mel_framerate)

    @torch.inference_mode()
    def inference(
        self,
        prompt_tokens: torch.Tensor,
        prompt_mel: torch.Tensor,
        tokens: torch.Tensor,
        speaker_embedding: torch.Tensor,
        *,
        n_timesteps: int = 10,
        cfg_rate: float | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        on_velocity: VelocityHook | None = None,
    ) -> torch.Tensor:
        """Generate the mel of `tokens` in the prompt's voice: (1, mel_dim, T_gen), float32 or wider.

        prompt_tokens (1, P) and tokens (1, N) are raw codebook ids; prompt_mel (1, Tp, mel_dim);
        speaker_embedding (1, 192), raw CAMPPlus output. `noise` (1, frame_count(P+N), mel_dim) is
        the initial ODE state: pass upstream's recorded draw for exact parity; without it the
        noise is drawn from `generator` (default RNG when None) through the same code.
        The ODE state is integrated in float32 (float64 for a float64 model) whatever the
        estimator's dtype: bf16/fp16 speed up the network, not the accumulation of Euler steps.
        """
        mel, _ = self._generate(
            prompt_tokens, prompt_mel, tokens, speaker_embedding, n_timesteps, cfg_rate, noise, generator, on_velocity
        )
        return mel

    @torch.inference_mode()
    def inference_chunk(
        self,
        prompt_tokens: torch.Tensor,
        prompt_mel: torch.Tensor,
        tokens: torch.Tensor,
        speaker_embedding: torch.Tensor,
        *,
        block_pattern: list[int],
        resume: StepStates | None = None,
        n_timesteps: int = 10,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, StepStates]:
        """One call of upstream's streaming flow (`inference_with_cache`, `is_causal=True`) over all tokens so far.

        Attention is block-causal (`dit.block_causal_mask` of `block_pattern`, in tokens). `resume`
        holds the previous call's ODE state at the input of every Euler step; its first `keep` frames
        (counted from the prompt's first frame) replace this call's at each step, so frames already
        settled follow the same trajectory. Returns the mel of `tokens` and this call's step states.
        """
        mask = block_causal_mask(
            block_pattern, self.frame_count(prompt_tokens.shape[1] + tokens.shape[1]), self._device
        )
        return self._generate(
            prompt_tokens,
            prompt_mel,
            tokens,
            speaker_embedding,
            n_timesteps,
            None,
            noise,
            generator,
            None,
            mask,
            resume,
        )

    def _generate(
        self,
        prompt_tokens: torch.Tensor,
        prompt_mel: torch.Tensor,
        tokens: torch.Tensor,
        speaker_embedding: torch.Tensor,
        n_timesteps: int,
        cfg_rate: float | None,
        noise: torch.Tensor | None,
        generator: torch.Generator | None,
        on_velocity: VelocityHook | None,
        mask: torch.Tensor | None = None,
        resume: StepStates | None = None,
    ) -> tuple[torch.Tensor, StepStates]:
        cfg = self.config
        device, state = self._device, self._state_dtype
        self._check_inputs(prompt_tokens, prompt_mel, tokens, speaker_embedding, n_timesteps)
        all_tokens = torch.cat([prompt_tokens.to(device), tokens.to(device)], dim=1)
        n_frames = self.frame_count(all_tokens.shape[1])
        prompt_frames = prompt_mel.shape[1]

        mel_cond = torch.zeros(1, n_frames, cfg.mel_dim, device=device, dtype=state)
        copy_len = min(prompt_frames, n_frames)
        if copy_len:
            mel_cond[:, :copy_len] = prompt_mel[:, prompt_frames - copy_len :].to(device, state)
        speaker = F.normalize(speaker_embedding.to(device, state), dim=1)
        if cfg.remove_spkr_concat_condition:
            condition = mel_cond
        else:
            projected = self.spk_embed_affine_layer(speaker.to(self._dtype)).to(state)
            condition = torch.cat([mel_cond, projected[:, None, :].expand(-1, n_frames, -1)], dim=-1)

        x = self._initial_noise(noise, (1, n_frames, cfg.mel_dim), generator)
        rate = cfg.inference_cfg_rate if cfg_rate is None else float(cfg_rate)
        if rate > 0:
            # Conditional and unconditional passes run as one batch of 2 (same x, same t).
            uncond_tokens = torch.zeros_like(all_tokens) if cfg.speech_token_cfg else all_tokens
            all_tokens = torch.cat([all_tokens, uncond_tokens])
            condition = torch.cat([condition, torch.zeros_like(condition)])
            speaker = torch.cat([speaker, torch.zeros_like(speaker)])
        x, states = self._solve(x, all_tokens, condition, speaker, n_timesteps, rate, on_velocity, mask, resume)
        return x[:, prompt_frames:].transpose(1, 2).contiguous(), states

    def _solve(
        self,
        x: torch.Tensor,
        tokens: torch.Tensor,
        condition: torch.Tensor,
        speaker: torch.Tensor,
        n_timesteps: int,
        cfg_rate: float,
        on_velocity: VelocityHook | None,
        mask: torch.Tensor | None = None,
        resume: StepStates | None = None,
    ) -> tuple[torch.Tensor, StepStates]:
        """Euler steps on upstream's schedule; dt is re-derived from the accumulated t every step.

        With `resume`, each step's input keeps the resumed frames (upstream's `last_step_cache`); the
        states returned are every step's input, for the next chunk to resume from.
        """
        dtype = self._dtype
        text = self.estimator.text_emb_layer(tokens, x.shape[1])  # constant over the steps
        condition = condition.to(dtype)
        speaker_in = speaker.to(dtype) if self.config.spkr_emb_adaLN else None
        t_span = torch.linspace(0, 1, n_timesteps + 1, device=x.device, dtype=x.dtype)
        if self.config.t_scheduler == "cosine":
            t_span = 1 - torch.cos(t_span * 0.5 * math.pi)
        t = t_span[0]
        dt = t_span[1] - t_span[0]
        states: list[torch.Tensor] = []
        for step in range(1, n_timesteps + 1):
            if resume is not None:
                keep = min(x.shape[1], resume.keep, resume.states[step - 1].shape[1])
                x = x.clone()
                x[:, :keep] = resume.states[step - 1][:, :keep]
            if mask is not None:  # streaming: the next chunk resumes from these
                states.append(x.clone())
            x_in = x.to(dtype).expand(tokens.shape[0], -1, -1)
            velocity = self.estimator(x_in, condition, text, t[None], speaker_in, mask).to(x.dtype)
            v_cond = velocity[:1]
            v_uncond = velocity[1:] if cfg_rate > 0 else None
            if on_velocity is not None:
                on_velocity(step, v_cond, v_uncond)
            v = v_cond if v_uncond is None else (1.0 + cfg_rate) * v_cond - cfg_rate * v_uncond
            x = x + dt * v
            t = t + dt
            if step < n_timesteps:
                dt = t_span[step + 1] - t
        return x, StepStates(states, keep=0)

    def _initial_noise(
        self, noise: torch.Tensor | None, shape: tuple[int, int, int], generator: torch.Generator | None
    ) -> torch.Tensor:
        if noise is not None:
            if tuple(noise.shape) != shape:
                raise ValueError(f"noise has shape {tuple(noise.shape)}, expected {shape} (1, frames, mel_dim)")
            return noise.to(self._device, self._state_dtype)
        # Drawn in float32 whatever the model dtype, so a seed gives the same noise in every dtype.
        draw_device = generator.device if generator is not None else self._device
        return torch.randn(shape, generator=generator, device=draw_device).to(self._device, self._state_dtype)

    def _check_inputs(
        self,
        prompt_tokens: torch.Tensor,
        prompt_mel: torch.Tensor,
        tokens: torch.Tensor,
        speaker_embedding: torch.Tensor,
        n_timesteps: int,
    ) -> None:
        cfg = self.config
        for name, ids in (("prompt_tokens", prompt_tokens), ("tokens", tokens)):
            if ids.dim() != 2 or ids.shape[0] != 1 or ids.dtype.is_floating_point:
                raise ValueError(f"{name} must be integer ids of shape (1, N), got {ids.dtype} {tuple(ids.shape)}")
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) > cfg.vocab_size):
                raise ValueError(f"{name} holds ids outside [0, {cfg.vocab_size}]: drop non-speech ids first")
        if prompt_mel.dim() != 3 or prompt_mel.shape[0] != 1 or prompt_mel.shape[2] != cfg.mel_dim:
            raise ValueError(f"prompt_mel must be (1, frames, {cfg.mel_dim}), got {tuple(prompt_mel.shape)}")
        if tuple(speaker_embedding.shape) != (1, SPEAKER_DIM):
            raise ValueError(f"speaker_embedding must be (1, {SPEAKER_DIM}), got {tuple(speaker_embedding.shape)}")
        if n_timesteps < 1:
            raise ValueError(f"n_timesteps must be at least 1, got {n_timesteps}")


def _abbreviate(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return f"[{shown}{f', ... ({len(items) - limit} more)' if len(items) > limit else ''}]"
