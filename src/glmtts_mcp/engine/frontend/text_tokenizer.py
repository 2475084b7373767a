"""The checkpoint's text tokenizer (`vq32k-phoneme-tokenizer/`), read without running its Python file.

Upstream loads the folder with `AutoTokenizer.from_pretrained(..., trust_remote_code=True)`, which runs
`tokenization_chatglm.py`: a tiktoken byte-level BPE over `tokenizer.model` plus the HF "added tokens"
of `tokenizer_config.json` (GLM specials, phonemes and the 32768 audio tokens). The HF slow tokenizer
splits the text on every added-token string first (earliest match, longest at that position, no
whitespace stripped) and BPE-encodes each remaining piece on its own; `encode` adds no prefix or EOS.
This module does the same with the `tiktoken` package and plain JSON.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import tiktoken

from glmtts_mcp.engine.types import EngineError

logger = logging.getLogger(__name__)

RANK_FILE = "tokenizer.model"
CONFIG_FILE = "tokenizer_config.json"

# The GLM-4 pre-tokenizer regex (`pat_str` of the checkpoint's tokenization_chatglm.py).
GLM4_PAT_STR = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# The strings upstream's get_special_token_ids looks up, in its order (role -> token).
SPECIAL_TOKEN_STRINGS: dict[str, str] = {
    "ats": "<|audio_0|>",
    "ate": "<|audio_32767|>",
    "boa": "<|begin_of_audio|>",
    "eoa": "<|user|>",
    "pad": "<|endoftext|>",
}


class TokenizerError(EngineError):
    """A tokenizer folder that is missing files or lacks the tokens GLM-TTS needs."""


@dataclass(frozen=True)
class SpecialTokenIds:
    """The ids the LLM prompt layout and stopping rule need (see upstream get_special_token_ids)."""

    pad: int  # <|endoftext|>
    eoa: int  # <|user|>: the stop token
    boa: int  # <|begin_of_audio|>
    ats: int  # <|audio_0|>: speech token k is id ats + k
    ate: int  # <|audio_32767|>


def read_rank_file(path: Path) -> dict[bytes, int]:
    """Parse a tiktoken rank file: one `base64(token bytes) rank` pair per line."""
    ranks: dict[bytes, int] = {}
    with path.open("rb") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                token, rank = line.split()
                ranks[base64.b64decode(token, validate=True)] = int(rank)
            except ValueError as exc:
                raise TokenizerError(
                    f"{path} line {line_no} is not 'base64 rank': {exc}. Re-download the checkpoint's tokenizer."
                ) from exc
    return ranks


def read_added_tokens(path: Path) -> dict[str, int]:
    """content -> id of every entry of `added_tokens_decoder` in tokenizer_config.json."""
    config = json.loads(path.read_text(encoding="utf-8"))
    decoder = config.get("added_tokens_decoder")
    if not isinstance(decoder, dict):
        raise TokenizerError(f"{path} has no 'added_tokens_decoder' mapping. Re-download the checkpoint's tokenizer.")
    added: dict[str, int] = {}
    flagged: list[str] = []
    for id_text, entry in decoder.items():
        content = entry["content"]
        added[content] = int(id_text)
        if entry.get("lstrip") or entry.get("rstrip") or entry.get("single_word"):
            flagged.append(content)
    if flagged:
        # GLM-TTS's tokens have these flags off; the HF slow tokenizer would strip whitespace here.
        logger.warning(
            "%s: %d added tokens set lstrip/rstrip/single_word (e.g. %r); they are ignored",
            path,
            len(flagged),
            flagged[0],
        )
    return added


class AddedTokenSplitter:
    """Split text on added-token strings: the earliest match wins, the longest one at that position.

    Candidates are bucketed by first character, with their distinct lengths longest first, so
    building it for ~35k tokens is a dict pass and a scan costs a few set lookups per candidate start.
    """

    def __init__(self, tokens: dict[str, int]) -> None:
        self._ids = tokens
        self.tokens: Mapping[str, int] = tokens
        lengths: dict[str, set[int]] = {}
        for token in tokens:
            if token:
                lengths.setdefault(token[0], set()).add(len(token))
        self._lengths = {ch: sorted(ls, reverse=True) for ch, ls in lengths.items()}

    def split(self, text: str) -> list[str | int]:
        """Text pieces (str) and added-token ids (int), in order; empty pieces are dropped."""
        out: list[str | int] = []
        start = i = 0
        n = len(text)
        while i < n:
            match = None
            for length in self._lengths.get(text[i], ()):
                candidate = text[i : i + length]
                if candidate in self._ids:
                    match = candidate
                    break
            if match is None:
                i += 1
                continue
            if i > start:
                out.append(text[start:i])
            out.append(self._ids[match])
            i += len(match)
            start = i
        if start < n:
            out.append(text[start:])
        return out


class TextTokenizer:
    """Text -> ids exactly as upstream's `glm_tokenizer.encode(text)`."""

    def __init__(self, ranks: dict[bytes, int], added_tokens: dict[str, int], source: Path) -> None:
        self._source = source
        self._bpe = tiktoken.Encoding(
            name=f"glmtts:{source}", pat_str=GLM4_PAT_STR, mergeable_ranks=ranks, special_tokens={}
        )
        self._splitter = AddedTokenSplitter(added_tokens)
        self.base_vocab_size = len(ranks)
        self.vocab_size = max([*ranks.values(), *added_tokens.values()]) + 1

    @classmethod
    def from_dir(cls, path: Path) -> TextTokenizer:
        """Load a folder in the official layout (tokenizer.model + tokenizer_config.json)."""
        path = Path(path)
        for name in (RANK_FILE, CONFIG_FILE):
            if not (path / name).is_file():
                raise TokenizerError(
                    f"{path / name} is missing; point the engine at the checkpoint's "
                    f"vq32k-phoneme-tokenizer folder or re-download the checkpoint."
                )
        return cls(read_rank_file(path / RANK_FILE), read_added_tokens(path / CONFIG_FILE), path)

    def encode(self, text: str) -> list[int]:
        """Ids of `text`; no prefix or EOS is added, so "" gives []."""
        ids: list[int] = []
        for piece in self._splitter.split(text):
            if isinstance(piece, int):
                ids.append(piece)
            else:
                ids.extend(self._bpe.encode_ordinary(piece))
        return ids

    def missing_tokens(self, tokens: Iterable[str]) -> list[str]:
        """Those of `tokens` that are not added tokens here (they would be read as plain text)."""
        return [token for token in tokens if token not in self._splitter.tokens]

    def special_token_ids(self) -> SpecialTokenIds:
        """Look each special token up by string, as upstream does, and check it is one id >= <|endoftext|>."""
        config = self._source / CONFIG_FILE
        found: dict[str, int] = {}
        endoftext = self._single_id("pad", SPECIAL_TOKEN_STRINGS["pad"], config)
        for role, token in SPECIAL_TOKEN_STRINGS.items():
            token_id = self._single_id(role, token, config)
            if token_id < endoftext:
                raise TokenizerError(
                    f"{token} ({role}) has id {token_id}, below <|endoftext|> ({endoftext}) in "
                    f"{config}; this is not a GLM-TTS tokenizer."
                )
            found[role] = token_id
        return SpecialTokenIds(**found)

    def _single_id(self, role: str, token: str, config: Path) -> int:
        ids = self.encode(token)
        if len(ids) != 1:
            raise TokenizerError(
                f"{token} ({role}) is not one added token in {config} (it encodes to {len(ids)} "
                f"ids); GLM-TTS needs it: use the checkpoint's own vq32k-phoneme-tokenizer folder."
            )
        return ids[0]
