"""Transcribe a reference clip with openai-whisper, on arrays only (never ffmpeg, never a download).

The model file is a local `{"dims", "model_state_dict"}` checkpoint that
`checkpoint.layout.resolve_whisper_model` finds; `whisper.load_model` on a path reads it with
`weights_only=True`.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import whisper
from whisper.audio import CHUNK_LENGTH, HOP_LENGTH, N_FRAMES, N_SAMPLES
from whisper.decoding import DecodingOptions, DecodingResult
from whisper.timing import find_alignment, merge_punctuations
from whisper.tokenizer import get_tokenizer

from glmtts_mcp.engine.checkpoint.layout import CheckpointError
from glmtts_mcp.engine.types import AudioInputError

log = logging.getLogger(__name__)

WHISPER_SAMPLE_RATE = 16000


# Decoding bounds. A reference is at most 30 s, so it is decoded as ONE window without timestamps.
# whisper.transcribe instead seeks to the last predicted timestamp, which may be only 0.02 s further
# on: a random or hallucinating model can re-decode a 3 s clip ~150 times, each window at up to six
# temperatures x five samples x 224 tokens. Here the work is one encoder pass, one language step and
# at most len(FALLBACK_TEMPERATURES) decodes of token_cap(duration) tokens.
TOKENS_PER_SECOND = 15  # generous: fast English speech is ~4 tokens/s, dense CJK speech ~10
MIN_TOKENS = 16
FALLBACK_TEMPERATURES = (0.0, 0.4, 0.8)  # whisper's schedule is 0.0-1.0 in 0.2 steps
BEST_OF = 3  # samples per sampled (temperature > 0) decode
# whisper.transcribe's defaults for "this decode failed: retry hotter" and "this window is silence"
COMPRESSION_RATIO_THRESHOLD = 2.4
LOGPROB_THRESHOLD = -1.0
NO_SPEECH_THRESHOLD = 0.6


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str | None
    capped: bool = False  # decoding stopped at the token cap: the text may be cut off or a hallucinated loop


# whisper.transcribe's defaults: punctuation that joins the word after it, and the word before it
PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"


@dataclass(frozen=True)
class WordTime:
    word: str
    start_s: float
    end_s: float


def token_cap(seconds: float, n_text_ctx: int) -> int:
    """Most text tokens to decode for a clip: generous for its duration, within the model's half context."""
    return max(1, min(n_text_ctx // 2, MIN_TOKENS + math.ceil(TOKENS_PER_SECOND * seconds)))


class Transcriber:
    """Loads the whisper model on first use (most clones come with a transcript or hit the cache)."""

    def __init__(self, model_path: Path, device: str = "cpu") -> None:
        self.model_path = Path(model_path)
        self.device = device
        self._model: whisper.Whisper | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def _load(self) -> whisper.Whisper:
        with self._lock:
            if self._model is None:
                log.info("loading whisper model %s on %s", self.model_path, self.device)
                try:
                    self._model = whisper.load_model(str(self.model_path), device=self.device)
                except Exception as exc:  # torch.load/whisper raise many types for a bad file (pickle, zip, keys)
                    raise CheckpointError(
                        f"cannot load whisper model {self.model_path}: {exc}; re-download it with `glmtts-mcp download`"
                    ) from exc
                self._model.eval()
            return self._model

    def unload(self) -> None:
        with self._lock:
            self._model = None

    def align_words(self, wav16k: np.ndarray, text: str, language: str | None = None) -> list[WordTime]:
        """Where each word of the known `text` is said in `wav16k` (at most one 30 s window): Whisper's
        cross-attention alignment (dynamic time warping over its alignment heads), the step
        `whisper.transcribe(word_timestamps=True)` runs after decoding, given the text instead of a decode."""
        model = self._load()
        audio = np.ascontiguousarray(wav16k, dtype=np.float32).reshape(-1)
        if len(audio) > N_SAMPLES:
            raise AudioInputError(
                f"Whisper aligns at most {CHUNK_LENGTH} s at once, got {len(audio) / WHISPER_SAMPLE_RATE:.1f} s"
            )
        tokenizer = get_tokenizer(
            model.is_multilingual, num_languages=model.num_languages, language=language or "en", task="transcribe"
        )
        tokens = tokenizer.encode(" " + " ".join(text.split()))
        if not tokens or not len(audio):
            return []
        fp16 = self.device.startswith("cuda")
        with torch.inference_mode():
            mel = whisper.log_mel_spectrogram(audio, model.dims.n_mels, padding=N_SAMPLES, device=model.device)
            mel = whisper.pad_or_trim(mel, N_FRAMES)
            timings = find_alignment(model, tokenizer, tokens, mel.half() if fp16 else mel, len(audio) // HOP_LENGTH)
        merge_punctuations(timings, PREPEND_PUNCTUATIONS, APPEND_PUNCTUATIONS)  # "you?" is one word, as whisper says it
        return [WordTime(t.word.strip(), float(t.start), float(t.end)) for t in timings if t.word.strip()]

    def transcribe(self, wav16k: np.ndarray, language: str | None = None) -> Transcript:
        """Text and detected (or given) language of float32 mono 16 kHz audio of at most 30 s.

        Bounded work: one encoder pass, one language-detection step, and at most
        len(FALLBACK_TEMPERATURES) decodes of token_cap(duration) tokens each.
        """
        model = self._load()
        audio = np.ascontiguousarray(wav16k, dtype=np.float32).reshape(-1)
        seconds = len(audio) / WHISPER_SAMPLE_RATE
        if len(audio) > N_SAMPLES:
            raise AudioInputError(
                f"Whisper transcribes at most {CHUNK_LENGTH} s of reference audio, got {seconds:.1f} s: "
                "cut the clip, or pass its transcript"
            )
        fp16 = self.device.startswith("cuda")
        sample_len = token_cap(seconds, model.dims.n_text_ctx)
        # Sampled fallbacks draw from torch's global RNG: seed a private copy of it so a clip always
        # gets the same transcript (and the caller's RNG state is left alone).
        device = torch.device(self.device)
        cuda_devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda_devices), torch.inference_mode():
            torch.manual_seed(0)
            mel = whisper.log_mel_spectrogram(audio, model.dims.n_mels, padding=N_SAMPLES, device=model.device)
            mel = whisper.pad_or_trim(mel, N_FRAMES)[None]  # the clip zero-padded to one 30 s window
            features = model.encoder(mel.half() if fp16 else mel)
            if language is None:
                language = _detect_language(model, features)
            result = _decode_with_fallback(model, features, language, sample_len, fp16)
        silent = _is_silence(result)
        text = "" if silent else " ".join(result.text.split())
        capped = not silent and len(result.tokens) >= sample_len  # no end-of-text within the cap
        if capped:
            log.warning(
                "Whisper stopped at its %d-token cap for a %.1f s clip: the transcript %r may be cut off or "
                "repeat itself; pass the clip's transcript for best results",
                sample_len,
                seconds,
                text[:80],
            )
        return Transcript(text=text, language=language, capped=capped)


def _detect_language(model: whisper.Whisper, features: torch.Tensor) -> str:
    """The most probable language code of encoded audio ("en" for English-only models)."""
    if not model.is_multilingual:
        return "en"
    _, probs = model.detect_language(features)
    return str(max(probs[0], key=probs[0].get))


def _is_silence(result: DecodingResult) -> bool:
    """whisper.transcribe's no-speech rule: a likely no-speech window whose text is also improbable."""
    return result.no_speech_prob > NO_SPEECH_THRESHOLD and result.avg_logprob < LOGPROB_THRESHOLD


def _decode_with_fallback(
    model: whisper.Whisper, features: torch.Tensor, language: str, sample_len: int, fp16: bool
) -> DecodingResult:
    """whisper.transcribe's temperature fallback on one window, over FALLBACK_TEMPERATURES only.

    A decode is kept when it is silence or neither repetitive (gzip compression ratio) nor improbable
    (mean log-probability); otherwise the next, hotter one is tried, and the last one is kept as
    whisper does.
    """
    tokenizer = get_tokenizer(model.is_multilingual, num_languages=model.num_languages)
    # Only text may follow <|notimestamps|>: suppress every special token after <|endoftext|> (start,
    # language, task, timestamp tokens), as whisper's own "-1" does for non-speech symbols.
    suppress = [-1, *range(tokenizer.eot + 1, model.dims.n_vocab)]
    for temperature in FALLBACK_TEMPERATURES:
        options = DecodingOptions(
            task="transcribe",
            language=language,
            temperature=temperature,
            sample_len=sample_len,
            best_of=BEST_OF if temperature > 0 else None,
            without_timestamps=True,
            suppress_tokens=suppress,
            fp16=fp16,
        )
        result: DecodingResult = whisper.decode(model, features, options)[0]
        fluent = result.compression_ratio <= COMPRESSION_RATIO_THRESHOLD and result.avg_logprob >= LOGPROB_THRESHOLD
        if fluent or _is_silence(result):
            break
    return result
