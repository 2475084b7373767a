"""Voice ids from content, and the rules for names, ids and tags that may touch the disk.

An id is the first 20 hex digits of a sha256 over the canonical reference PCM (the exact samples the
voice keeps, see reference_file: mono, or the file's channels for an `upstream` clip; int16, or for an
`upstream` clip of a 24-bit or float source its int32 24-bit values or float32 samples, with their type
named so they never collide with 16-bit ones), its sample rate, the transcript given at clone time
(None, "let Whisper transcribe", is distinct from "") and the reference processing when it is not
"clean" (clean ids are what they always were). The same recording cloned twice therefore lands on
the same voice, the same recording under the two processings gives two voices, and an imported
voice's id can be recomputed from its own files.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

import numpy as np

from glmtts_mcp.voices.reference_file import reference_problem

ID_LENGTH = 20
ID_PATTERN = re.compile(rf"^[0-9a-f]{{{ID_LENGTH}}}$")
MAX_NAME_LENGTH = 64
MAX_LOOKUP_LENGTH = 256
MAX_TAGS = 32
MAX_TAG_LENGTH = 48
_NAME_EXTRA_CHARS = frozenset(" -_.'()+&,!")
_ID_DOMAIN = b"glmtts-mcp voice id v1\n"


def canonical_pcm(pcm: np.ndarray, processing: str = "clean") -> np.ndarray:
    """The samples a voice keeps, [N] or [N, channels]. `clean` samples are int16 (floats in [-1, 1] are
    clipped and rounded by the clean rule); `upstream` samples stay as given: int16, int32 holding 24-bit
    values or float32 (the engine's `kept_samples` gives the narrowest exact one)."""
    array = np.asarray(pcm)
    if processing == "clean" and np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError("reference PCM holds NaN or infinite samples")
        array = np.rint(np.clip(array.astype(np.float64), -1.0, 1.0) * 32767.0).astype(np.int16)
    if processing == "clean" and array.dtype != np.int16:
        raise ValueError(f"a clean reference's PCM must be float in [-1, 1] or int16, got {array.dtype}")
    problem = reference_problem(array)
    if problem:
        raise ValueError(problem)
    return np.ascontiguousarray(array)


def voice_id(pcm: np.ndarray, sample_rate: int, transcript: str | None, processing: str = "clean") -> str:
    """The content-derived id of a voice (see module docstring)."""
    if not isinstance(sample_rate, int | np.integer) or sample_rate <= 0:
        raise ValueError(f"sample rate must be a positive int, got {sample_rate!r}")
    if transcript is not None and not isinstance(transcript, str):
        raise ValueError(f"transcript must be a str or None, got {type(transcript).__name__}")
    samples = canonical_pcm(pcm, processing)
    digest = hashlib.sha256(_ID_DOMAIN)
    digest.update(f"rate={int(sample_rate)}\n".encode())
    if processing != "clean":
        digest.update(f"processing={processing}\n".encode())
    if samples.ndim == 2:  # mono ids are what they always were
        digest.update(f"channels={samples.shape[1]}\n".encode())
    if samples.dtype != np.int16:  # 16-bit ids are what they always were
        digest.update(f"samples={samples.dtype.name}\n".encode())
    if transcript is None:
        digest.update(b"transcript=none\n")
    else:
        text = transcript.encode("utf-8")
        digest.update(f"transcript={len(text)}\n".encode() + text)
    digest.update(samples.astype(samples.dtype.newbyteorder("<"), copy=False).tobytes())
    return digest.hexdigest()[:ID_LENGTH]


def is_voice_id(text: str) -> bool:
    """True for strings shaped like an id (safe as a folder name)."""
    return isinstance(text, str) and ID_PATTERN.fullmatch(text) is not None


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch).startswith("C") for ch in text)


def name_problem(name: object) -> str | None:
    """Why `name` cannot name a voice, or None when it can."""
    if not isinstance(name, str):
        return f"a voice name must be text, got {type(name).__name__}"
    if not name or name != name.strip():
        return "a voice name must be non-empty and must not start or end with spaces"
    if len(name) > MAX_NAME_LENGTH:
        return f"a voice name is at most {MAX_NAME_LENGTH} characters (got {len(name)})"
    if _has_control(name):
        return "a voice name must not contain control or invisible characters"
    bad = sorted({ch for ch in name if not (ch.isalnum() or ch in _NAME_EXTRA_CHARS)})
    if bad:
        return f"a voice name may hold letters, digits, spaces and {''.join(sorted(_NAME_EXTRA_CHARS))}; not {bad}"
    if name.startswith(".") or ".." in name:
        return "a voice name must not start with '.' or contain '..'"
    if is_voice_id(name.lower()):
        return f"a voice name must not look like a voice id ({ID_LENGTH} hex digits)"
    return None


def name_key(name: str) -> str:
    """Names are unique case-insensitively: this is the key they are compared by."""
    return unicodedata.normalize("NFKC", name).casefold()


def lookup_problem(id_or_name: object) -> str | None:
    """Why `id_or_name` cannot possibly refer to a voice, or None."""
    if not isinstance(id_or_name, str):
        return f"a voice id or name must be text, got {type(id_or_name).__name__}"
    if len(id_or_name) > MAX_LOOKUP_LENGTH:
        return f"a voice id or name is at most {MAX_LOOKUP_LENGTH} characters (got {len(id_or_name)})"
    if is_voice_id(id_or_name):
        return None
    return name_problem(id_or_name)


def tags_problem(tags: object) -> str | None:
    """Why `tags` cannot be stored, or None."""
    if not isinstance(tags, list | tuple):
        return "tags must be a list of strings"
    if len(tags) > MAX_TAGS:
        return f"at most {MAX_TAGS} tags per voice"
    for tag in tags:
        if not isinstance(tag, str) or not tag.strip() or len(tag) > MAX_TAG_LENGTH or _has_control(tag):
            return f"each tag is 1-{MAX_TAG_LENGTH} printable characters; {tag!r} is not"
    return None
