"""The GLM-TTS language model: a Llama backbone that continues a text prompt with speech tokens.

Mirrors upstream `llm/glmtts.py` `GLMTTS.inference` (PRETRAIN mode) and `cosyvoice/utils/common.py`
`ras_sampling`: the prompt [prompt_text, text, boa, prompt_speech + ats] is embedded with the Llama
input embedding, then one token is sampled per step with a KV cache until `<|user|>` (eoa) is drawn.
Sampling is "repetition aware" (RAS): a nucleus draw that repeats any of the last `win_size` ids is
replaced by a draw from the full softmax. Everything runs over the full vocabulary, as upstream does.
The cached forward passes are the batch scheduler's (runtime/scheduler.py, over static_cache.py's slots):
this module holds what one sequence is (prompt layout, sampling state, stop rules), not how it is run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import torch
from transformers import LlamaForCausalLM

from glmtts_mcp.engine.frontend.text_tokenizer import SpecialTokenIds
from glmtts_mcp.engine.types import EngineError

logger = logging.getLogger(__name__)


class LLMLoadError(EngineError):
    """An LLM folder that is missing files or whose weights do not fit its config."""


def load_llm(
    llm_dir: Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    attn_implementation: str | None = None,
) -> LlamaForCausalLM:
    """Load `llm/` (config.json + model.safetensors or sharded safetensors with an index), offline.

    transformers follows the index's weight_map (the real checkpoint splits layer 21 across shards)
    and ties the output projection to `model.embed_tokens` when `tie_word_embeddings` is set (the
    real files hold no `lm_head.weight`). Any parameter missing from the files is an error: the
    library would otherwise fill it with random values.
    """
    llm_dir = Path(llm_dir)
    if not (llm_dir / "config.json").is_file():
        raise LLMLoadError(f"{llm_dir / 'config.json'} is missing; point the engine at the checkpoint's llm folder.")
    if not any(llm_dir.glob("*.safetensors")):
        raise LLMLoadError(f"no .safetensors weights in {llm_dir}; re-download the checkpoint's llm folder.")
    kwargs: dict[str, Any] = {"attn_implementation": attn_implementation} if attn_implementation else {}
    loaded = LlamaForCausalLM.from_pretrained(
        llm_dir, dtype=dtype, local_files_only=True, use_safetensors=True, output_loading_info=True, **kwargs
    )
    # with output_loading_info, a (model, info) pair: transformers' annotation names only the model
    model, info = cast(tuple[LlamaForCausalLM, dict[str, list[str]]], loaded)
    problems = {name: sorted(info[name]) for name in ("missing_keys", "mismatched_keys") if info[name]}
    if problems:
        raise LLMLoadError(
            f"weights in {llm_dir} do not match its config.json: {problems}; re-download the checkpoint's llm folder."
        )
    if info["unexpected_keys"]:
        logger.warning(
            "ignoring %d unexpected tensors in %s (e.g. %s)",
            len(info["unexpected_keys"]),
            llm_dir,
            sorted(info["unexpected_keys"])[0],
        )
    return model.to(device).eval()  # type: ignore[arg-type]  # transformers wraps .to() so mypy binds no self


def input_embedding(model: LlamaForCausalLM) -> torch.nn.Embedding:
    """The token table; transformers types get_input_embeddings() as a bare Module."""
    return cast(torch.nn.Embedding, model.get_input_embeddings())


@dataclass(frozen=True)
class RasSettings:
    """Repetition-aware sampling parameters (upstream ras_sampling defaults)."""

    top_p: float = 0.8
    top_k: int = 25
    win_size: int = 10
    tau_r: float = 0.1
    temperature: float = 1.0

    def __post_init__(self) -> None:
        # Outside these ranges upstream's sampler fails (empty nucleus) or always redraws (win_size 0).
        if not (
            0.0 < self.top_p <= 1.0
            and self.top_k >= 1
            and self.win_size >= 1
            and self.tau_r > 0.0
            and self.temperature > 0.0
        ):
            raise ValueError(
                f"invalid sampling settings {self}: need 0 < top_p <= 1, top_k >= 1, win_size >= 1, "
                f"tau_r > 0 and temperature > 0"
            )


class Draws(Protocol):
    """Where the random picks come from: a generator in the product, recorded picks in parity runs."""

    def nucleus(self, step: int, probs: torch.Tensor, ids: torch.Tensor) -> int:
        """Pick one of `ids` with (unnormalised) weights `probs`."""

    def full(self, step: int, probs: torch.Tensor) -> int:
        """Pick one id of the whole vocabulary with weights `probs`."""


class GeneratorDraws:
    """torch.multinomial draws, as upstream makes them (one per step, a second one on fallback steps).

    With `generator=None` the global torch RNG is used, which is what upstream's `set_seed` seeds.
    Probabilities move to the generator's device, so a CPU generator gives the same draws on any device.
    """

    def __init__(self, generator: torch.Generator | None = None) -> None:
        self.generator = generator

    def _draw(self, probs: torch.Tensor) -> int:
        if self.generator is not None:
            probs = probs.to(self.generator.device)
        return int(torch.multinomial(probs, 1, replacement=True, generator=self.generator))

    def nucleus(self, step: int, probs: torch.Tensor, ids: torch.Tensor) -> int:
        return int(ids[self._draw(probs)])

    def full(self, step: int, probs: torch.Tensor) -> int:
        return self._draw(probs)


def nucleus_size(sorted_probs: torch.Tensor, top_p: float, top_k: int) -> int:
    """How many of the descending probabilities upstream's nucleus keeps.

    Upstream adds probabilities one by one in float32 while the running sum is below top_p and
    fewer than top_k are kept (so the one that crosses top_p is kept). The sum is redone here in
    float32 step by step, because a double-precision cumsum can flip a boundary case.
    """
    head = sorted_probs[:top_k].float().cpu().numpy()
    limit = np.float32(top_p)
    total = np.float32(0.0)
    kept = 0
    for p in head:
        if not total < limit:
            break
        total = np.float32(total + p)
        kept += 1
    return kept


def ras_sample(
    logp: torch.Tensor, recent: Sequence[int], step: int, settings: RasSettings, draws: Draws
) -> tuple[int, int, int]:
    """One RAS pick from log-probabilities `logp` [vocab]: (chosen id, nucleus pick, fallback pick or -1).

    The draws are made on the host from one device-to-host copy of the top_k candidates (ids are
    exact in float32 below 2**24), which is also the step's only synchronisation on a GPU; the
    full softmax crosses over only on the rare fallback steps.
    """
    probs = (logp / settings.temperature).softmax(dim=0)
    sorted_probs, sorted_ids = probs.sort(descending=True, stable=True)
    head = torch.stack((sorted_probs[: settings.top_k], sorted_ids[: settings.top_k].to(probs.dtype))).cpu()
    kept = nucleus_size(head[0], settings.top_p, settings.top_k)
    pick = draws.nucleus(step, head[0, :kept], head[1, :kept].long())
    repeats = sum(1 for t in recent[-settings.win_size :] if t == pick)
    if repeats >= settings.win_size * settings.tau_r:
        fallback = draws.full(step, logp.softmax(dim=0).cpu())  # upstream redraws without temperature
        return fallback, pick, fallback
    return pick, pick, -1


@dataclass(frozen=True)
class StepTrace:
    """What one decoding step saw and chose (for parity checks and debugging)."""

    logp: torch.Tensor  # [vocab] float32 on CPU, eoa at -inf while step < min_len
    nucleus_pick: int
    fallback_pick: int  # -1 when no redraw happened
    sampled: int  # absolute id; eoa on the step that ended generation


class SpeechSequence:
    """One generation's own sampling state: its prompt, draws, RAS window and stop rules.

    The batch scheduler runs the forward passes and hands each step's logits row to `push`, which
    samples and says what to feed next, so a sequence decodes by the same rules alone or in a batch.
    Lengths count the text to synthesise: eoa is masked while step < int(min_ratio * text_len), and at
    most int(max_ratio * text_len) steps run. Generation stops on eoa only (the config's eos id is an
    ordinary text id here). Ids outside the audio range are kept as upstream keeps them (possibly
    negative once ats is subtracted): see `GLMTTSLLM.in_audio_range`.
    """

    def __init__(
        self,
        prompt: list[int],
        text_len: int,
        *,
        eoa: int,
        ats: int,
        sampling: RasSettings,
        draws: Draws,
        min_ratio: float = 2.0,
        max_ratio: float = 20.0,
        trace: list[StepTrace] | None = None,
        warnings: list[str] | None = None,
    ) -> None:
        self.prompt = prompt
        self.text_len = text_len
        self.min_len = int(text_len * min_ratio)
        self.max_len = int(text_len * max_ratio)
        self.eoa, self.ats = eoa, ats
        self.sampling, self.draws, self.trace = sampling, draws, trace
        self.warnings = warnings if warnings is not None else []  # the caller's list: a cut changes its result
        self.out: list[int] = []  # absolute ids drawn so far (eoa excluded)
        self.step = 0
        self.done = self.max_len <= 0  # nothing may be generated at all

    def limit_steps(self, max_steps: int) -> None:
        """Lower the step limit (a cache slot that holds fewer positions than the text allows)."""
        self.max_len = min(self.max_len, max_steps)

    def push(self, logits: torch.Tensor) -> int | None:
        """Sample this step from `logits` [vocab]; the id to feed next, or None once finished."""
        logp = logits.float().log_softmax(dim=-1)
        if self.step < self.min_len:
            logp[self.eoa] = -float("inf")
        chosen, nucleus, fallback = ras_sample(logp, self.out, self.step, self.sampling, self.draws)
        if self.trace is not None:
            self.trace.append(StepTrace(logp.cpu(), nucleus, fallback, chosen))
        self.step += 1
        if chosen == self.eoa:
            self.done = True
            return None
        self.out.append(chosen)
        if self.step >= self.max_len:
            logger.warning(
                "no end-of-audio token after %d steps (max %d for %d text tokens); output is cut",
                self.step,
                self.max_len,
                self.text_len,
            )
            self.warnings.append(
                f"cut after {self.step} speech tokens, the most its text allows, without the "
                "model's end-of-speech token: its audio may end abruptly (try another seed)"
            )
            self.done = True
            return None
        return chosen

    @property
    def tokens(self) -> list[int]:
        """The speech tokens so far (id - ats)."""
        return [t - self.ats for t in self.out]


class GLMTTSLLM:
    """A LlamaForCausalLM with GLM-TTS's special ids: prompt layout, sequences to decode, audio-range filter."""

    def __init__(self, model: LlamaForCausalLM, special: SpecialTokenIds) -> None:
        self.model = model
        self.special = special
        vocab = input_embedding(model).num_embeddings
        if vocab >= 2**24:
            raise LLMLoadError(f"a vocabulary of {vocab} ids is too large: ras_sample moves ids as float32")
        for name, token_id in vars(special).items():
            if not 0 <= token_id < vocab:
                raise LLMLoadError(
                    f"special token {name}={token_id} lies outside the LLM vocabulary ({vocab}); "
                    f"the tokenizer and llm folders come from different checkpoints."
                )

    @property
    def device(self) -> torch.device:
        return input_embedding(self.model).weight.device

    def prompt_ids(
        self, text_ids: Sequence[int], prompt_text_ids: Sequence[int], prompt_speech_ids: Sequence[int]
    ) -> list[int]:
        """[prompt_text, text, boa, prompt_speech + ats] (upstream PRETRAIN layout, no BOS).

        Upstream adds ats to the prompt speech only when there is prompt text as well, and would
        otherwise embed the raw codebook ids as text ids; that combination is refused here.
        """
        if prompt_speech_ids and not prompt_text_ids:
            raise ValueError(
                "prompt speech tokens were given without their transcript; pass the prompt text "
                "(or no prompt speech at all)"
            )
        speech = [self.special.ats + int(t) for t in prompt_speech_ids]
        return [*map(int, prompt_text_ids), *map(int, text_ids), self.special.boa, *speech]

    def _embed(self, ids: Sequence[int]) -> torch.Tensor:
        tensor = torch.tensor([list(ids)], dtype=torch.long, device=self.device)
        return self.model.get_input_embeddings()(tensor)

    def sequence(
        self,
        text_ids: Sequence[int],
        prompt_text_ids: Sequence[int],
        prompt_speech_ids: Sequence[int],
        *,
        sampling: RasSettings = RasSettings(),
        generator: torch.Generator | None = None,
        draws: Draws | None = None,
        min_ratio: float = 2.0,
        max_ratio: float = 20.0,
        trace: list[StepTrace] | None = None,
        warnings: list[str] | None = None,
    ) -> SpeechSequence:
        """The sampling state of one generation (see `SpeechSequence`); `draws` replaces the generator,
        e.g. with the parity runner's recorded picks, and `trace` receives one `StepTrace` per step."""
        return SpeechSequence(
            self.prompt_ids(text_ids, prompt_text_ids, prompt_speech_ids),
            len(text_ids),
            eoa=self.special.eoa,
            ats=self.special.ats,
            sampling=sampling,
            draws=draws if draws is not None else GeneratorDraws(generator),
            min_ratio=min_ratio,
            max_ratio=max_ratio,
            trace=trace,
            warnings=warnings,
        )

    @torch.inference_mode()
    def teacher_forced_logits(
        self,
        text_ids: Sequence[int],
        prompt_text_ids: Sequence[int],
        prompt_speech_ids: Sequence[int],
        speech_tokens: Sequence[int],
    ) -> torch.Tensor:
        """Raw logits [len(speech_tokens) + 1, vocab] of one uncached forward over prompt + tokens.

        Row i is what the model predicts for output i given the tokens before it (tokens are id - ats,
        as decoding returns them); the last row predicts the token after the last one. This is not a
        second decoder: the tokens are given, nothing is sampled or cached, and the forward is
        transformers' own, so it is the independent reference the cached slot forward is checked against.
        """
        prefix = self.prompt_ids(text_ids, prompt_text_ids, prompt_speech_ids)
        ids = prefix + [self.special.ats + int(t) for t in speech_tokens]
        logits = self.model(inputs_embeds=self._embed(ids), use_cache=False).logits
        return logits[0, len(prefix) - 1 :].float()

    def in_audio_range(self, tokens: Sequence[int], warn: bool = True) -> list[int]:
        """Keep the tokens that are speech codebook ids [0, ate - ats]; Flow cannot use the rest.

        RAS's fallback may draw text or special ids; upstream passes them on and only warns (once per
        segment: stream mode filters its pieces with `warn=False` and the whole list at the end).
        """
        top = self.special.ate - self.special.ats
        kept = [t for t in tokens if 0 <= t <= top]
        if warn and len(kept) != len(tokens):
            logger.warning(
                "dropped %d of %d generated tokens that are not speech tokens (outside 0..%d)",
                len(tokens) - len(kept),
                len(tokens),
                top,
            )
        return kept
