"""The engine: clone a voice into features once, then narrate any text from those features.

`extract_voice` is upstream's prompt preparation (glmtts_inference.jsonl_generate): the transcript
is normalized and tokenized with a trailing space, the clip gives 25 Hz speech tokens (16 kHz), a
CAMPPlus embedding (16 kHz fbank) and the flow's prompt mel (24 kHz). `synthesize` is upstream's
`generate_long`: normalize, split by length, normalize each piece; per piece re-seed, prompt the LLM
with the voice plus the history of earlier pieces (capped at 750 speech tokens), run the flow with the
original prompt only, vocode, and hand the piece out as soon as it is ready (offline mode), or hand out
its audio in chunks while the LLM still generates it (stream mode: segment_stream.py). Synthesis from
stored features never touches Whisper or the prompt encoders.

`reference_processing` chooses between upstream's behaviour exactly (`upstream`: the reference's
channels untouched at its own rate, pieces concatenated, every piece spoken) and ours (`clean`:
a cleaned 24 kHz reference, pieces joined by a 20 ms crossfade, pieces without a letter or digit
skipped); docs/e2e-parity.md measures both against upstream's own pipeline.

The LLM runs in the batch scheduler (scheduler.py): the segments of all requests in flight decode
together, one forward pass per step, a new request joining at the next step. Long texts are pipelined:
with `overlap` the LLM of piece n+1 is queued before this thread runs the flow and vocoder of piece n.
Every piece draws from its own generator, re-seeded as upstream does, and only the request's own thread
touches its history, so the audio does not depend on the timing or on the other requests.
A narration can be stopped at any time: its `cancel` event (or closing its generator) takes its LLM
sequences out of the batch at the scheduler's next step and ends it before any further flow or vocoder.
The job queue (`concurrency`) gates what does not batch: flow + vocoder of a segment, and cloning.
"""

from __future__ import annotations

import gc
import logging
import re
import threading
import time
from collections.abc import Callable, Generator, Mapping
from concurrent.futures import CancelledError, Future
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import torch

from glmtts_mcp.engine.checkpoint.layout import resolve_whisper_model
from glmtts_mcp.engine.checkpoint.loader import Models, load_models
from glmtts_mcp.engine.frontend import audio_features as audio
from glmtts_mcp.engine.frontend.g2p import g2p_data
from glmtts_mcp.engine.frontend.reference_clip import ReferenceProcessing, load_reference, reference_pcm_at
from glmtts_mcp.engine.frontend.text_normalize import TextFrontend
from glmtts_mcp.engine.models.llm import RasSettings
from glmtts_mcp.engine.models.static_cache import SlotKVCache
from glmtts_mcp.engine.models.token2wav_stream import ChunkedToken2Wav, StreamBlocks, StreamPrompt, first_block
from glmtts_mcp.engine.models.transcribe import WHISPER_SAMPLE_RATE, Transcriber, WordTime
from glmtts_mcp.engine.runtime.jobs import JobQueue
from glmtts_mcp.engine.runtime.output_encoding import Crossfader
from glmtts_mcp.engine.runtime.scheduler import BatchScheduler, LLMBackend, SchedulerStats, SpeechRequest
from glmtts_mcp.engine.runtime.segment_stream import TokenFeed, chunked_segment
from glmtts_mcp.engine.types import (
    AudioChunk,
    AudioInputError,
    EngineError,
    ExtractedVoice,
    NarrationCancelled,
    ProgressCallback,
    ReferenceAudio,
    SynthesisOptions,
    VoiceFeatures,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

MODEL_SAMPLE_RATE = 24000  # HiFT output and the prompt mel's rate
SPEECH_SAMPLE_RATE = 16000  # speech tokenizer, CAMPPlus and Whisper
MAX_HISTORY_SPEECH_TOKENS = 750  # upstream MAX_LLM_SEQ_INP_LEN
CROSSFADE_MS = 20.0
DEFAULT_MAX_BATCH = 4
# KV cache positions per sequence: a 30 s prompt clip (750 speech tokens) plus up to 750 of history,
# the transcripts, and up to 20 speech tokens per text token of a segment fit with room to spare.
SLOT_POSITIONS = 4096

# Accepted ranges of the per-call sampling settings.
TEMPERATURE_RANGE = (0.05, 2.0)
TOP_P_RANGE = (0.05, 1.0)
TOP_K_RANGE = (1, 1000)
SAMPLE_RATE_RANGE = (8000, 48000)

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def resolve_device(device: str) -> torch.device:
    """ "auto" is the GPU when there is one, else the CPU; anything else must exist."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise EngineError(f"device {device!r} was requested but no CUDA GPU is available: use --device cpu or auto")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """ "auto" is bf16 on a GPU that supports it (half the LLM's memory), fp32 otherwise."""
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if dtype not in _DTYPES:
        raise EngineError(f"unknown dtype {dtype!r}: use one of auto, {', '.join(sorted(_DTYPES))}")
    return _DTYPES[dtype]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


_PHONEME_TOKEN = re.compile(r"<\|[A-Z0-9]+\|>")


def _speakable(text: str) -> bool:
    """Whether normalized text has a letter or digit (normalization turns "..." into ".")."""
    return any(ch.isalnum() for ch in text)


@dataclass
class _History:
    """Upstream's long-form cache: the prompt plus earlier segments' text and speech tokens."""

    text_ids: list[list[int]]
    speech_ids: list[list[int]]

    def prompt_for(self, next_text_len: int) -> tuple[list[int], list[int]]:
        """(prompt text ids, prompt speech ids) for the next segment, pruned as get_cached_prompt does.

        Speech tokens expected for the next segment are estimated from the cache's speech/text
        ratio; entries after the original prompt are dropped oldest first while the total would
        exceed 750 tokens. The original prompt is always kept.
        """
        if len(self.text_ids) > 1:
            text_total = sum(len(t) for t in self.text_ids)
            ratio = sum(len(s) for s in self.speech_ids) / (text_total if text_total > 0 else 1.0)
            estimate = int(ratio * next_text_len)
            while sum(len(s) for s in self.speech_ids) + estimate > MAX_HISTORY_SPEECH_TOKENS:
                if len(self.speech_ids) <= 1:
                    break
                self.text_ids.pop(1)
                self.speech_ids.pop(1)
        return [t for ids in self.text_ids for t in ids], [s for ids in self.speech_ids for s in ids]


@dataclass(frozen=True)
class _VoicePrompt:
    """The voice as one synthesis uses it, made once per synthesis from the (shared, read-only) features:
    the LLM's prompt ids as lists (the history starts from them) and the flow's prompt tensors on the
    model's device with a batch axis (views: no copy when the features are already there)."""

    text_ids: list[int]
    speech_ids: list[int]
    flow_speech_ids: torch.Tensor  # [1, M]
    flow_mel: torch.Tensor  # [1, T, 80]
    flow_embedding: torch.Tensor  # [1, 192]

    @classmethod
    def of(cls, tensors: Mapping[str, torch.Tensor], device: torch.device) -> _VoicePrompt:
        speech_ids = tensors["prompt_speech_ids"]
        return cls(
            text_ids=tensors["prompt_text_ids"].tolist(),
            speech_ids=speech_ids.tolist(),
            flow_speech_ids=speech_ids.to(device)[None],
            flow_mel=tensors["prompt_mel"].to(device)[None],
            flow_embedding=tensors["speaker_embedding"].to(device)[None],
        )


@dataclass
class _Timer:
    timings: dict[str, float] = field(default_factory=dict)

    def run(self, stage: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """fn(*args, **kwargs), its wall time added to `timings[stage]`."""
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - start


class Engine:
    """One loaded GLM-TTS model behind a job queue; safe to call from many threads."""

    def __init__(
        self,
        checkpoint: Path,
        *,
        device: torch.device,
        llm_dtype: torch.dtype,
        flow_dtype: torch.dtype,
        whisper_model: str | Path,
        concurrency: int = 1,
        compile_llm: bool | None = None,
        overlap: bool | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
        slot_positions: int | None = None,
        reference_processing: ReferenceProcessing = "clean",
        text_chunk_chars: int = 0,
        stream_blocks: StreamBlocks | None = None,
        first_chunk_priority: bool = True,
    ) -> None:
        self.checkpoint = Path(checkpoint)
        self.stream_blocks = stream_blocks or StreamBlocks()  # stream mode's block and look-ahead sizes
        self.first_chunk_priority = first_chunk_priority  # stream mode: the LLM batch waits for a first chunk
        self.reference_processing = reference_processing
        self._device = device
        self._llm_dtype = llm_dtype
        self._flow_dtype = flow_dtype
        self.whisper_model = whisper_model
        self.jobs = JobQueue(concurrency)  # flow + vocoder and cloning: the work that does not batch
        if max_batch < 1:
            raise EngineError(f"max_batch={max_batch}: pass --max-batch 1 or more")
        self.max_batch = max_batch
        self._slot_positions = slot_positions
        self._scheduler: LLMBackend | None = None
        # torch.compile of the LLM's batched step: CUDA graphs on a GPU; on a CPU compiling costs more than it saves.
        self.compile_llm = device.type == "cuda" if compile_llm is None else compile_llm
        # On a CPU both stages compete for the same cores (measured: no gain on 2 cores), so only on CUDA.
        self.overlap = device.type == "cuda" if overlap is None else overlap
        self._llm_stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.text_frontend = TextFrontend(text_chunk_chars)
        self.prompt_mel = audio.prompt_mel_features  # the mel stage (an attribute so tests can count calls)
        self._models: Models | None = None
        self._transcriber: Transcriber | None = None
        self._load_lock = threading.Lock()
        self.load_s = 0.0

    @classmethod
    def load(
        cls,
        checkpoint: Path,
        *,
        device: str = "auto",
        dtype: str = "auto",
        whisper_model: str | Path = "base",
        flow_dtype: str = "float32",
        concurrency: int = 1,
        compile_llm: bool | None = None,
        overlap: bool | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
        slot_positions: int | None = None,
        reference_processing: ReferenceProcessing = "clean",
        text_chunk_chars: int = 0,
        stream_first_block: int = StreamBlocks().sizes[0],
        stream_first_look_ahead: int = StreamBlocks().look_ahead[0],
        stream_first_chunk_priority: bool = True,
    ) -> Engine:
        """Load every model now, the checkpoint validated first (Whisper loads on first transcription).

        `dtype` is the LLM's (auto: bf16 on a GPU); the flow uses `flow_dtype` (fp32 by default, see
        docs/checkpoint.md §5). `compile_llm` compiles the LLM's decoding step; `overlap` runs the next
        segment's LLM alongside the current segment's flow and vocoder (both default to on CUDA only).
        `max_batch` bounds the sequences the LLM decodes together; the KV cache holds that many slots of
        `slot_positions` (default: SLOT_POSITIONS, at most the model's maximum) and is checked against free memory.
        `text_chunk_chars` bounds the text normalizer's memory on long texts (0: whole, as upstream; TextFrontend).
        `stream_first_block` / `stream_first_look_ahead`: stream mode's first block and its look-ahead in
        tokens (upstream: 25 and 12); the later blocks are upstream's 50/25 and 200/100.
        `stream_first_chunk_priority`: the LLM batch waits while a narration's first chunk is made (scheduler.py).
        """
        resolved = resolve_device(device)
        engine = cls(
            Path(checkpoint),
            device=resolved,
            llm_dtype=resolve_dtype(dtype, resolved),
            flow_dtype=resolve_dtype(flow_dtype, resolved),
            whisper_model=whisper_model,
            concurrency=concurrency,
            compile_llm=compile_llm,
            overlap=overlap,
            max_batch=max_batch,
            slot_positions=slot_positions,
            reference_processing=reference_processing,
            text_chunk_chars=text_chunk_chars,
            stream_blocks=first_block(stream_first_block, stream_first_look_ahead),
            first_chunk_priority=stream_first_chunk_priority,
        )
        engine._load_models()
        return engine

    # --- properties -----------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def dtype(self) -> str:
        """The LLM's dtype ("bfloat16" or "float32"); flow and vocoder: see `memory_info`."""
        return dtype_name(self._llm_dtype)

    @property
    def queue_depth(self) -> int:
        return self.jobs.depth

    def scheduler_stats(self) -> SchedulerStats | None:
        """The LLM scheduler's figures, or None while the models are not loaded (never loads them)."""
        scheduler = self._scheduler
        return scheduler.stats() if scheduler is not None else None

    @property
    def loaded(self) -> bool:
        return self._models is not None

    @property
    def models(self) -> Models:
        """The loaded models. An unloaded engine stays unloaded: its owner (EngineHost) loads a new one,
        so every load is counted, timed and its failure recorded in one place."""
        models = self._models
        if models is None:
            raise EngineError("the model was unloaded while this request waited: send the request again")
        return models

    def _load_models(self) -> None:
        start = time.perf_counter()
        models = load_models(
            self.checkpoint, self._device, self._llm_dtype, self._flow_dtype, batched_llm=self.max_batch > 1
        )
        self._scheduler = self._start_scheduler(models)
        self._models = models
        self.load_s = time.perf_counter() - start
        log.info("models loaded from %s on %s in %.1f s", self.checkpoint, self._device, self.load_s)

    def _start_scheduler(self, models: Models) -> BatchScheduler:
        """The LLM's batch scheduler, its KV cache sized from max_batch; refused when it cannot fit."""
        config = models.llm.model.config
        positions = min(self._slot_positions or SLOT_POSITIONS, config.max_position_embeddings)
        needed = SlotKVCache.bytes_needed(config, self.max_batch, positions, self._llm_dtype)
        free = _free_memory_bytes(self._device)
        gib = 1024**3
        if free is not None and needed > free:
            raise EngineError(
                f"the LLM's KV cache for --max-batch {self.max_batch} needs {needed / gib:.2f} GiB "
                f"({self.max_batch} slots x {positions} positions, {dtype_name(self._llm_dtype)}) but only "
                f"{free / gib:.2f} GiB is free on {self._device}: lower --max-batch (each slot takes "
                f"{needed / self.max_batch / gib:.2f} GiB) or free memory"
            )
        log.info(
            "LLM KV cache: %d slot(s) x %d positions = %.1f MiB (%s) on %s",
            self.max_batch,
            positions,
            needed / 1024**2,
            dtype_name(self._llm_dtype),
            self._device,
        )
        return BatchScheduler(
            models.llm, self.max_batch, positions, stream=self._llm_stream, compile_step=self.compile_llm
        )

    @property
    def scheduler(self) -> LLMBackend:
        """The LLM backend; like `models`, gone once the engine is unloaded."""
        scheduler = self._scheduler
        if scheduler is None:
            raise EngineError("the model was unloaded while this request waited: send the request again")
        return scheduler

    @property
    def transcriber(self) -> Transcriber:
        """Whisper, resolved and loaded on first use (a missing file only matters without a transcript)."""
        with self._load_lock:
            if self._transcriber is None:
                path = resolve_whisper_model(self.whisper_model, self.checkpoint)
                self._transcriber = Transcriber(path, device=str(self._device))
            return self._transcriber

    def align_words(self, pcm: np.ndarray, sample_rate: int, text: str) -> list[WordTime]:
        """Where each word of `text` is said in `pcm` (at most 30 s): Whisper's alignment of the known text."""
        wav16 = audio.resample(torch.from_numpy(np.asarray(pcm, dtype=np.float32)), sample_rate, WHISPER_SAMPLE_RATE)
        return self.transcriber.align_words(wav16.numpy(), text)

    # --- lifecycle --------------------------------------------------------------------------

    def unload(self) -> None:
        """Free every model for good (waits for running jobs); the owner loads a new Engine when needed."""
        with self.jobs.slot(), self._load_lock:
            if self._scheduler is not None:
                self._scheduler.close()
                self._scheduler = None
            self._models = None
            if self._transcriber is not None:
                self._transcriber.unload()
            gc.collect()
            if self._device.type == "cuda":
                torch.cuda.empty_cache()

    def memory_info(self) -> dict[str, object]:
        """Parameter bytes per module, and the GPU allocator's figures on CUDA."""
        info: dict[str, object] = {
            "device": str(self._device),
            "llm_dtype": dtype_name(self._llm_dtype),
            "flow_dtype": dtype_name(self._flow_dtype),
            "loaded": self.loaded,
            "whisper_loaded": self._transcriber is not None and self._transcriber.loaded,
        }
        models = self._models
        if models is not None:
            modules = {
                "llm": models.llm.model,
                "flow": models.flow,
                "vocoder": models.hift,
                "speech_tokenizer": models.speech_tokenizer.encoder,
            }
            info["parameter_bytes"] = {
                name: sum(t.numel() * t.element_size() for t in (*m.parameters(), *m.buffers()))
                for name, m in modules.items()
            }
        if self._device.type == "cuda":
            info["cuda_allocated_bytes"] = torch.cuda.memory_allocated(self._device)
            info["cuda_reserved_bytes"] = torch.cuda.memory_reserved(self._device)
            info["cuda_peak_allocated_bytes"] = torch.cuda.max_memory_allocated(self._device)
        return info

    # --- cloning ----------------------------------------------------------------------------

    def prepare_reference(self, source: str | Path | bytes) -> ReferenceAudio:
        """Decode, check and prepare a reference clip by `reference_processing` (no model runs: the
        library hashes this first)."""
        return load_reference(source, processing=self.reference_processing, target_sr=MODEL_SAMPLE_RATE)

    def extract_voice(
        self,
        ref: ReferenceAudio,
        transcript: str | None = None,
        language: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> ExtractedVoice:
        """Features of a reference clip; Whisper transcribes it when no transcript is given."""
        report = progress or (lambda done, total, message: None)
        timer = _Timer()
        with self.jobs.slot():
            models = self.models
            # upstream's signals: the channel mix for the prompt mel and CAMPPlus (Whisper hears it too),
            # channel 0 for the speech tokenizer (one and the same for a mono clip)
            wav24 = reference_pcm_at(ref, MODEL_SAMPLE_RATE)
            wav16 = reference_pcm_at(ref, SPEECH_SAMPLE_RATE)
            tokens16 = reference_pcm_at(ref, SPEECH_SAMPLE_RATE, first_channel=True) if ref.pcm.ndim > 1 else wav16
            source: Literal["user", "whisper"] = "user"
            warnings: list[str] = []
            if transcript is None or not transcript.strip():
                report(0, 5, "transcribing the reference with Whisper")
                heard = timer.run("whisper", self.transcriber.transcribe, wav16[0].numpy(), language)
                if not heard.text.strip():
                    raise AudioInputError(
                        "Whisper heard no words in the reference audio: pass its transcript, or use a clip "
                        "with clear speech"
                    )
                transcript, language, source = heard.text, heard.language, "whisper"
                if heard.capped:
                    warnings.append(
                        "Whisper's transcript hit its length cap and may be wrong: pass {transcript} with what "
                        "the clip says for the best clone"
                    )
            report(1, 5, "tokenizing the transcript")
            prompt_text_ids = timer.run("text", self._prompt_text_ids, transcript)
            report(2, 5, "extracting speech tokens")
            speech_ids = timer.run("speech_tokenizer", models.speech_tokenizer.tokenize, tokens16)
            if speech_ids.numel() == 0:
                raise AudioInputError("the reference audio gave no speech tokens: use 2-30 s of clear speech")
            report(3, 5, "computing the speaker embedding")
            embedding = timer.run("campplus", models.speaker.embed, wav16)
            report(4, 5, "computing the prompt mel")
            mel = timer.run("mel", self.prompt_mel, wav24)
            report(5, 5, "voice features ready")
        tensors = {
            "prompt_text_ids": torch.tensor(prompt_text_ids, dtype=torch.int64),
            "prompt_speech_ids": speech_ids.detach().to("cpu", torch.int64),
            "prompt_mel": mel[0].detach().to("cpu", torch.float32).contiguous(),
            "speaker_embedding": embedding.detach().to("cpu", torch.float32),
        }
        return ExtractedVoice(
            features=VoiceFeatures(tensors=tensors),
            transcript=transcript,
            transcript_source=source,
            language=language,
            timings=timer.timings,
            warnings=warnings,
        )

    def _prompt_text_ids(self, transcript: str) -> list[int]:
        """Normalized transcript plus a trailing space, as upstream tokenizes the prompt text."""
        normalized = self.text_frontend.normalize(transcript)
        ids = self.models.text_tokenizer.encode(normalized + " ")
        if not _speakable(normalized) or not ids:
            raise AudioInputError(f"the transcript {transcript!r} has no speakable text: pass what the clip says")
        return ids

    # --- synthesis --------------------------------------------------------------------------

    def check_options(self, options: SynthesisOptions) -> None:
        """Refuse out-of-range sampling settings, naming the fix (the text's length is the face's policy)."""
        checks = [
            ("temperature", options.temperature, *TEMPERATURE_RANGE),
            ("top_p", options.top_p, *TOP_P_RANGE),
            ("top_k", options.top_k, *TOP_K_RANGE),
            ("sample_rate", options.sample_rate, *SAMPLE_RATE_RANGE),
        ]
        for name, value, low, high in checks:
            if not (low <= value <= high):
                raise EngineError(f"{name}={value} is out of range: use a value from {low} to {high}")
        if not isinstance(options.seed, int) or not 0 <= options.seed < 2**63:
            raise EngineError(f"seed={options.seed!r} must be an integer from 0 to 2**63-1")

    def _check_phoneme_tokens(self, segments: list[str]) -> None:
        """Refuse phoneme tokens this checkpoint's tokenizer does not hold (it would read them as plain text)."""
        used = {token for segment in segments for token in _PHONEME_TOKEN.findall(segment)}
        missing = self.models.text_tokenizer.missing_tokens(sorted(used & set(g2p_data().phoneme_tokens)))
        if missing:
            raise EngineError(
                f"this checkpoint's text tokenizer lacks the phoneme token(s) {', '.join(missing)}: phoneme "
                "readings need the official vq32k-phoneme-tokenizer folder"
            )

    def synthesize(
        self,
        text: str,
        features: VoiceFeatures,
        options: SynthesisOptions = SynthesisOptions(),
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Generator[AudioChunk, None, None]:
        """Narrate `text` in the voice, one chunk per text segment, the first as soon as it is ready;
        with `options.stream`, several chunks per segment, the first once the LLM has drawn its first
        block of speech tokens (upstream's token2wav_stream; its flow and vocoder noise come from a
        generator of their own, seeded with the seed, as the LLM is still drawing from the segment's).

        Deterministic for a fixed seed (each segment re-seeds, as upstream). The concatenation of
        the chunks is the whole narration (with `clean`, 20 ms crossfades at the joins).

        Setting `cancel` (from any thread) stops the narration: its LLM sequences (the current segment
        and a look-ahead one) leave the batch at the scheduler's next step, no further flow or vocoder
        runs, and the generator raises `NarrationCancelled`. Closing the generator stops it the same way;
        so does an error in it (the event, when given, is then set: this narration has ended).
        """
        self.check_options(options)
        tensors = features.tensors  # checked against FEATURE_SCHEMA where they entered: extraction or the library
        segments = self.text_frontend.synthesis_segments(text, pronunciation=options.pronunciation)
        self._check_phoneme_tokens(segments)
        if self.reference_processing == "clean":  # upstream speaks even a piece that is only punctuation
            segments = [s for s in segments if _speakable(s)]
        if not any(_speakable(s) for s in segments):
            raise EngineError(
                f"the text {text!r} has nothing to speak after normalization: pass words or numbers, "
                "not only punctuation or symbols"
            )
        return self._stream(segments, tensors, options, progress, cancel if cancel is not None else threading.Event())

    def _stream(
        self,
        segments: list[str],
        tensors: Mapping[str, torch.Tensor],
        options: SynthesisOptions,
        progress: ProgressCallback | None,
        cancel: threading.Event,
    ) -> Generator[AudioChunk, None, None]:
        report = progress or (lambda done, total, message: None)
        sampling = RasSettings(top_p=options.top_p, top_k=options.top_k, temperature=options.temperature)
        prompt = _VoicePrompt.of(tensors, self.models.device)
        history = _History(text_ids=[prompt.text_ids], speech_ids=[prompt.speech_ids])
        fader = Crossfader(MODEL_SAMPLE_RATE, CROSSFADE_MS if self.reference_processing == "clean" else 0.0)
        total = len(segments)
        report(0, total, f"synthesizing {total} segment(s)")

        def start_llm(index: int) -> tuple[SpeechRequest, Future[list[int]], TokenFeed]:
            feed = TokenFeed()
            request = self._llm_request(
                segments[index], history, sampling, options.seed, cancel, feed.put if options.stream else None
            )
            future = self.scheduler.submit(request)
            feed.watch(future)
            return request, future, feed

        def check_cancelled() -> None:
            if cancel.is_set():
                raise NarrationCancelled("the narration was cancelled")

        def out(pcm: np.ndarray) -> np.ndarray:
            if options.sample_rate != MODEL_SAMPLE_RATE and len(pcm):
                pcm = audio.resample(torch.from_numpy(pcm), MODEL_SAMPLE_RATE, options.sample_rate).numpy()
            return pcm.astype(np.float32, copy=False)

        told_as_read = False  # the text as read goes with the narration's first chunk only

        def chunk(index: int, pcm: np.ndarray, notes: list[str]) -> AudioChunk:
            nonlocal told_as_read
            segment = segments[index]
            as_read = () if told_as_read else tuple(segments)
            told_as_read = True
            return AudioChunk(
                pcm=out(pcm),
                sample_rate=options.sample_rate,
                segment_index=index,
                segment_count=total,
                text=segment,
                warnings=[f"segment {index + 1}/{total} ({_quoted(segment)}): {note}" for note in notes],
                as_read=as_read,
            )

        check_cancelled()
        pending = start_llm(0)
        try:
            for index, segment in enumerate(segments):
                request, future, feed = pending
                ahead = index + 1 < total
                notes = list(request.warnings)
                kept: list[int] = []  # the speech tokens the flow can use

                def generated_now(
                    generated: list[int],
                    request: SpeechRequest = request,
                    index: int = index,
                    kept: list[int] = kept,
                    notes: list[str] = notes,
                ) -> None:
                    """The segment's LLM is done: its tokens join the history, the next segment's LLM may start."""
                    nonlocal pending
                    history.text_ids.append(request.text_ids)  # the next segment's prompt needs this one's tokens
                    history.speech_ids.append(generated)
                    kept[:] = self.models.llm.in_audio_range(generated)
                    notes[:] = list(request.warnings) + _token_notes(len(generated), len(kept))
                    if index + 1 < total and self.overlap:
                        pending = start_llm(index + 1)

                if options.stream:
                    chunker = ChunkedToken2Wav(
                        self.models.flow,
                        self.models.hift,
                        StreamPrompt(prompt.flow_speech_ids, prompt.flow_mel, prompt.flow_embedding),
                        self.stream_blocks,
                        generator=torch.Generator().manual_seed(options.seed),  # the LLM draws from the request's
                    )
                    pieces = chunked_segment(
                        self.models.llm,
                        chunker,
                        feed,
                        future,
                        self.jobs.slot,
                        check_cancelled,
                        generated_now,
                        self.scheduler.paused if index == 0 and self.first_chunk_priority else nullcontext,
                    )
                    join = True
                    for number, piece in enumerate(pieces, start=1):
                        pcm = fader.push(piece, join=join)
                        join = False
                        report(index + number / (number + 1), total, f"segment {index + 1}/{total}: chunk {number}")
                        yield chunk(index, pcm, [])
                    if ahead and not self.overlap:
                        pending = start_llm(index + 1)
                    pcm = np.zeros(0, dtype=np.float32) if ahead else fader.flush()
                else:
                    try:
                        generated = future.result()
                    except CancelledError:
                        check_cancelled()
                        raise
                    check_cancelled()
                    generated_now(generated)
                    with self.jobs.slot():
                        check_cancelled()  # the wait for the job slot may have been long
                        wav = self._voice(segment, kept, request.generator, prompt)
                    if ahead and not self.overlap:
                        pending = start_llm(index + 1)
                    pcm = fader.push(wav)
                    if not ahead:
                        pcm = np.concatenate([pcm, fader.flush()])
                check_cancelled()  # set while the flow ran: nobody wants this chunk
                report(index + 1, total, f"segment {index + 1}/{total} ready")
                yield chunk(index, pcm, notes)
        except BaseException:  # cancelled, closed (GeneratorExit) or failed: end this narration's LLM work
            cancel.set()
            raise

    def _llm_request(
        self,
        segment: str,
        history: _History,
        sampling: RasSettings,
        seed: int,
        cancel: threading.Event,
        on_token: Callable[[int], None] | None = None,
    ) -> SpeechRequest:
        """The LLM work of one segment, prompted with the voice and the history so far; `cancel` is its narration's.

        One CPU generator per segment, re-seeded as upstream's set_seed(seed) before every piece and
        drawn in upstream's order (LLM, then flow noise and vocoder): the same audio on CPU and GPU.
        """
        text_ids = self.models.text_tokenizer.encode(segment)
        prompt_text, prompt_speech = history.prompt_for(len(text_ids))
        return SpeechRequest(
            text_ids,
            prompt_text,
            prompt_speech,
            sampling,
            torch.Generator().manual_seed(seed),
            cancel=cancel,
            on_token=on_token,
        )

    def _voice(self, segment: str, tokens: list[int], generator: torch.Generator, prompt: _VoicePrompt) -> np.ndarray:
        """Flow (with the original prompt) and vocoder for one segment's tokens: 24 kHz PCM."""
        if not tokens:
            log.warning("segment %r produced no speech tokens; it is left silent", segment)
            return np.zeros(0, dtype=np.float32)
        models = self.models
        with torch.inference_mode():
            mel = models.flow.inference(
                prompt.flow_speech_ids,
                prompt.flow_mel,
                torch.tensor([tokens], dtype=torch.long, device=models.device),
                prompt.flow_embedding,
                generator=generator,
            )
            wav, _, _ = models.hift.inference(mel, generator=generator)
        return wav[0].float().cpu().numpy()


def _token_notes(generated: int, kept: int) -> list[str]:
    """What the LLM's tokens changed in a segment's audio: ids outside the speech range dropped, or none left."""
    notes = []
    if kept < generated:
        notes.append(
            f"{generated - kept} of {generated} generated tokens were not speech tokens and were dropped (try another seed)"
        )
    if not kept:
        notes.append("no speech tokens were generated: this segment is silent (try another seed)")
    return notes


def _quoted(segment: str, limit: int = 40) -> str:
    """A segment as a warning names it: quoted, long ones shortened."""
    return repr(segment if len(segment) <= limit else segment[: limit - 1] + "…")


def _free_memory_bytes(device: torch.device) -> int | None:
    """Memory free for new buffers on `device` (CUDA: the driver's figure; CPU: MemAvailable), None if unknown."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
