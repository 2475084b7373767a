"""Chunked token-to-wav inside one segment: audio while the LLM is still generating (upstream's streaming recipe).

Clean-room counterpart of upstream utils/tts_model_util.py `Token2Wav.token2wav_stream`. Tokens are taken in
blocks (25, 50, then 200 at a time). For each block the flow runs over the prompt and every token so far
with a block-causal attention mask, resuming each Euler step's state for the frames already settled; the
vocoder turns the whole mel so far into audio; the audio past what was already emitted is handed out,
except the last `look_ahead` tokens' worth (their frames change once the next block is seen) and a 0.1 s
tail that is crossfaded into the next chunk. Upstream takes the whole token list at once; here tokens
arrive one by one (`push`), and the block that upstream would call the last is settled by `finish`.

Upstream's arithmetic is kept as written, including two quantities it derives from tensor shapes: its
block pattern starts with `len(prompt_tokens)` and its resumed length adds `prompt_mel.shape[0]`, which
for the (1, P) and (1, Tp, 80) tensors its flow requires are both the batch size, 1 (docs/parity.md).
Like upstream, each block recomputes the flow and the vocoder over everything so far; the segment length
(the text splitter's cap) bounds that work.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from glmtts_mcp.engine.models.flow import Flow, StepStates
from glmtts_mcp.engine.models.vocoder import HiFTGenerator

UPSTREAM_BLOCKS = (25, 50, 200)  # tokens per flow call, the last repeating
UPSTREAM_LOOK_AHEAD = (12, 25, 100)  # tokens at the end of each call's audio held back for the next
UPSTREAM_FADE_S = 0.1
PROMPT_BLOCK_TOKENS = 1  # upstream: len() of its (1, P) prompt tensor, the batch size
PROMPT_RESUME_FRAMES = 1  # upstream: shape[0] of its (1, Tp, 80) prompt mel, the batch size
FLOW_NOISE = "flow_noise"  # a recorded flow draw, beside the vocoder's DRAW_* keys


@dataclass(frozen=True)
class StreamBlocks:
    """Block and look-ahead sizes (tokens) and the crossfade at joins (seconds)."""

    sizes: tuple[int, ...] = UPSTREAM_BLOCKS
    look_ahead: tuple[int, ...] = UPSTREAM_LOOK_AHEAD
    fade_s: float = UPSTREAM_FADE_S

    def __post_init__(self) -> None:
        if not self.sizes or len(self.sizes) != len(self.look_ahead):
            raise ValueError(f"block sizes {self.sizes} and look-ahead sizes {self.look_ahead} must pair up")
        if any(n < 1 for n in self.sizes) or any(n < 0 for n in self.look_ahead):
            raise ValueError(f"block sizes {self.sizes} must be >= 1 and look-ahead {self.look_ahead} >= 0")
        if not 0 <= self.fade_s <= 1:
            raise ValueError(f"fade_s {self.fade_s} must be from 0 to 1 second")

    def size(self, index: int) -> int:
        return self.sizes[min(index, len(self.sizes) - 1)]


def first_block(size: int, look_ahead: int) -> StreamBlocks:
    """Upstream's blocks with another first block and look-ahead (a smaller one is heard sooner)."""
    if not 0 <= look_ahead < size:
        raise ValueError(f"the first block's look-ahead {look_ahead} must be from 0 to below its size {size}")
    return StreamBlocks((size, *UPSTREAM_BLOCKS[1:]), (look_ahead, *UPSTREAM_LOOK_AHEAD[1:]))


@dataclass(frozen=True)
class StreamPrompt:
    """The voice's flow prompt: tokens (1, P), mel (1, Tp, 80), CAMPPlus embedding (1, 192)."""

    tokens: torch.Tensor
    mel: torch.Tensor
    embedding: torch.Tensor


class ChunkedToken2Wav:
    """One segment's chunked synthesis: `push` tokens as they come, `finish` when the LLM stops.

    Both return the PCM (24 kHz float32) that is settled, in order; their concatenation is the segment.
    Noise comes from `generator`, or, for parity with a recorded upstream run, from `recorded` (one
    mapping per flow call: FLOW_NOISE and the vocoder's draws).
    """

    def __init__(
        self,
        flow: Flow,
        hift: HiFTGenerator,
        prompt: StreamPrompt,
        blocks: StreamBlocks = StreamBlocks(),
        *,
        generator: torch.Generator | None = None,
        recorded: Sequence[Mapping[str, torch.Tensor]] | None = None,
    ) -> None:
        self.flow, self.hift, self.prompt, self.blocks = flow, hift, prompt, blocks
        self.sample_rate, self.hop = hift.sampling_rate, hift.upsample_scale
        self.generator, self.recorded = generator, recorded
        self.pattern = [PROMPT_BLOCK_TOKENS, *blocks.sizes]
        self.tokens: list[int] = []  # every token pushed
        self.used = 0  # tokens already through the flow
        self.calls = 0
        self.resume: StepStates | None = None
        self.pointer = 0  # samples of the vocoder's output already handed out
        self.fade_tail: np.ndarray | None = None
        self.held = np.zeros(0, dtype=np.float32)  # the last call's audio not handed out (the end, if it was the last)
        self.emitted = 0

    def completes_block(self, more: int) -> bool:
        """Whether `more` tokens on top of those pushed complete a block (so that `push` would run the models)."""
        return len(self.tokens) + more - self.used >= self.blocks.size(self.calls)

    def push(self, tokens: Sequence[int]) -> list[np.ndarray]:
        """Take new tokens; the chunks every now complete block settles (often none)."""
        self.tokens.extend(tokens)
        chunks = []
        while self.completes_block(0):
            chunks.append(self._block(self.used + self.blocks.size(self.calls), last=False))
        return chunks

    def finish(self) -> np.ndarray:
        """The rest of the segment: the final partial block as upstream's last, or the held-back tail."""
        if len(self.tokens) > self.used:
            return self._block(len(self.tokens), last=True)
        rest, self.held = self.held, np.zeros(0, dtype=np.float32)
        self.emitted += len(rest)
        return rest

    def _draws(self) -> tuple[torch.Tensor | None, Mapping[str, torch.Tensor] | None]:
        if self.recorded is None:
            return None, None
        record = self.recorded[self.calls]
        return record[FLOW_NOISE], record

    def _block(self, end: int, last: bool) -> np.ndarray:
        device = self.flow.estimator.proj_out.weight.device
        noise, vocoder_draws = self._draws()
        mel, states = self.flow.inference_chunk(
            self.prompt.tokens,
            self.prompt.mel,
            torch.tensor([self.tokens[:end]], dtype=torch.long, device=device),
            self.prompt.embedding,
            block_pattern=self.pattern,
            resume=self.resume,
            noise=noise,
            generator=self.generator,
        )
        wav_t, _, _ = self.hift.inference(mel, generator=self.generator, draws=vocoder_draws)
        wav = wav_t[0].float().cpu().numpy()
        index, self.used, self.calls = self.calls, end, self.calls + 1

        look_s = self.blocks.look_ahead[min(len(self.blocks.look_ahead) - 1, index)] / self.flow.config.input_frame_rate
        settled_s = len(wav) / self.sample_rate - look_s
        states.keep = PROMPT_RESUME_FRAMES + int(settled_s * self.sample_rate / self.hop) + 1
        self.resume = states
        overlap = int(self.sample_rate * (look_s + self.blocks.fade_s))
        look_back = int(self.sample_rate * look_s)

        current = wav[self.pointer :] if index else wav
        if self.fade_tail is not None:
            n = min(len(self.fade_tail), len(current))
            current[:n] = self.fade_tail[:n] * np.linspace(1, 0, n) + current[:n] * np.linspace(0, 1, n)
        if last:
            out = current
            self.held = np.zeros(0, dtype=np.float32)
        else:
            keep = max(0, len(current) - overlap)
            out, self.held = current[:keep], current[keep:]
            self.pointer += keep
            self.fade_tail = current[-overlap:-look_back] if look_back > 0 else current[-overlap:]
        self.emitted += len(out)
        return out
