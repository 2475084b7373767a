"""Upstream GLM-TTS's phoneme-in frontend: `TextFrontEnd.g2p_infer` (``use_phoneme=True``).

After text normalisation upstream rewrites the text the LLM reads: a replacement dictionary is applied
first (longest key first, its value used as it is), the rest is cut into Chinese and other runs, each
Chinese run is read whole by jieba's POS segmentation + pypinyin (``utils/glm_g2p.py``: strict initials and
tone-3 finals, neutral tone 5, ``i`` after zh/ch/sh/r as ``iii`` and after z/c/s as ``ii``), the readings
are aligned back to the characters, and every character outside the 3,372 "safe" ones becomes its phoneme
tokens (``<|X|><|ING2|>``). Re-implemented here from upstream's behaviour at c5dc7ae; the data files in
``g2p_data/`` are upstream's own (see the README there). jieba and pypinyin are pinned as upstream pins
them: other versions segment or read some polyphones differently.

jieba is used without its prefix-dictionary cache: the dictionary is built in memory (about 1 s, once per
process), so nothing is read from or written to a temporary folder, and its logger writes to stderr only.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).with_name("g2p_data")

# Upstream's PUNCTUATION_CHARS (cosyvoice/utils/frontend_utils.py), tested as a string as upstream does.
_PUNCTUATION = "。？！；：、.?!;:，,"
# What glm_g2p's backend treats as punctuation in a syllable (its punctuation_marks default).
_G2P_MARKS = "，。；：！？、"
_SYLLABLE_END = "-"
_PHONE_JOIN = "|"
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0x2CEB0, 0x2EBEF),
    (0x30000, 0x3134F),
    (0x31350, 0x323AF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
    (0x2E80, 0x2EFF),
)
_TONED_SYLLABLE = re.compile(r"([a-zü]+)([0-9])")


class G2PFailure(Exception):
    """A Chinese run upstream's G2P cannot read (upstream keeps that run as text)."""


class ReadingError(ValueError):
    """A pinyin reading that does not map onto the model's phoneme tokens; the message names the syllable."""


@dataclass(frozen=True)
class G2PData:
    """Upstream's three data files: safe characters, replacement dictionary, the 204 phoneme tokens."""

    safe_chars: frozenset[str]
    replacements: dict[str, str]
    phonemes: tuple[str, ...]  # bare names, e.g. "ZH", "ING2"; the tokens are "<|ZH|>"

    @property
    def phoneme_tokens(self) -> tuple[str, ...]:
        return tuple(f"<|{p}|>" for p in self.phonemes)


@cache
def g2p_data() -> G2PData:
    """Read the packaged copies of upstream's files once per process."""
    safe = json.loads((DATA_DIR / "G2P_able_1word.json").read_text(encoding="utf-8"))
    replacements: dict[str, str] = {}
    for line in (DATA_DIR / "G2P_replace_dict.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            replacements.update(json.loads(line))
    phonemes = json.loads((DATA_DIR / "G2P_all_phonemes.json").read_text(encoding="utf-8"))
    return G2PData(frozenset(safe), replacements, tuple(phonemes[str(i)] for i in range(len(phonemes))))


def is_chinese(char: str) -> bool:
    """Upstream's `is_chinese`: the CJK ideograph blocks, extensions, compatibility forms and radicals."""
    code = ord(char)
    return any(low <= code <= high for low, high in _CJK_RANGES)


def chinese_runs(text: str) -> list[tuple[str, bool]]:
    """`text` cut into maximal runs of Chinese and of other characters: (run, is_chinese)."""
    runs: list[tuple[str, bool]] = []
    for char in text:
        zh = is_chinese(char)
        if runs and runs[-1][1] == zh:
            runs[-1] = (runs[-1][0] + char, zh)
        else:
            runs.append((char, zh))
    return runs


def apply_replacements(text: str, replacements: Mapping[str, str]) -> list[tuple[str, bool]]:
    """Upstream's `_tokenize_by_replace_dict`: scan left to right, at each place the longest key that starts
    there is replaced by its value; (fragment, replaced) with unreplaced characters gathered together."""
    by_first: dict[str, list[str]] = {}
    for key in sorted(replacements, key=len, reverse=True):
        if key:  # an empty key would match everywhere; dictionaries refuse it before this
            by_first.setdefault(key[0], []).append(key)
    fragments: list[tuple[str, bool]] = []
    i = 0
    while i < len(text):
        match = next((k for k in by_first.get(text[i], ()) if text.startswith(k, i)), None)
        if match is not None:
            fragments.append((replacements[match], True))
            i += len(match)
        elif fragments and not fragments[-1][1]:
            fragments[-1] = (fragments[-1][0] + text[i], False)
            i += 1
        else:
            fragments.append((text[i], False))
            i += 1
    return fragments


class _Segmenter:
    """jieba's POS segmentation (what upstream's `psg.lcut` runs) on a private tokenizer built without a cache."""

    def __init__(self) -> None:
        import jieba
        import jieba.posseg

        jieba.setLogLevel(logging.WARNING)  # its own handler writes to stderr; keep it to warnings
        tokenizer = jieba.Tokenizer()
        tokenizer.FREQ, tokenizer.total = tokenizer.gen_pfdict(tokenizer.get_dict_file())
        tokenizer.initialized = True  # so jieba never looks for, reads or writes its marshal cache file
        self._pos = jieba.posseg.POSTokenizer(tokenizer)
        self._lock = threading.Lock()

    def words(self, text: str) -> list[str]:
        with self._lock:
            return [pair.word for pair in self._pos.lcut(text)]


@cache
def _segmenter() -> _Segmenter:
    return _Segmenter()


def _syllable_parts(initial: str, final: str) -> list[str]:
    """One syllable as upstream's G2P writes it: [initial, final] or [final], with i -> iii / ii after
    the retroflex and dental sibilants."""
    if final.startswith("i") and initial in {"zh", "ch", "sh", "r"}:
        final = "iii" + final[1:]
    elif final.startswith("i") and initial in {"z", "c", "s"}:
        final = "ii" + final[1:]
    return [initial, final] if initial else [final]


def _drop_trailing_ends(parts: list[str]) -> list[str]:
    while parts and parts[-1] == _SYLLABLE_END:
        parts.pop()
    return parts


def run_phonemes(run: str) -> list[str]:
    """Upstream's `process_one` on one Chinese run: phoneme names with "-" after each syllable but the last.

    Raises G2PFailure where upstream's G2P raises (a syllable pypinyin gives neither initial nor final).
    """
    from pypinyin import Style, pinyin

    text = run.replace("嗯", "恩").replace("呣", "母")  # upstream's fixes for pypinyin's n2 / m2 readings
    parts: list[str] = []
    for word in _segmenter().words(text):
        initials = [p[0] for p in pinyin(word, style=Style.INITIALS, strict=True, neutral_tone_with_five=True)]
        finals = [p[0] for p in pinyin(word, style=Style.FINALS_TONE3, strict=True, neutral_tone_with_five=True)]
        for initial, final in zip(initials, finals, strict=False):
            syllable = initial + final
            if all(c in _G2P_MARKS for c in syllable):  # punctuation, or an empty reading
                if not syllable:
                    raise G2PFailure(f"no reading for a syllable of {word!r}")
                if parts and parts[-1] == _SYLLABLE_END:
                    parts.pop()
                parts.append(syllable[0])
                continue
            parts.extend([*_syllable_parts(initial, final), _SYLLABLE_END])
    return _drop_trailing_ends([p for p in parts if p])


def _tokens(parts: Iterable[str]) -> str:
    """Upstream's `_format_phonemes`: each name upper-cased in `<|...|>`, punctuation kept as it is."""
    out = []
    for part in parts:
        part = part.strip()
        if not part or part == _PHONE_JOIN:
            continue
        name = part.upper().replace("-", " ")
        out.append(name if name in _PUNCTUATION else f"<|{name}|>")
    return "".join(out)


def align(run: str, phonemes: list[str], safe_chars: frozenset[str]) -> str:
    """Upstream's `_align_and_replace`: each character takes its syllable's names (up to the next "-");
    a character outside the safe list is written as those tokens, the others stay text."""
    out: list[str] = []
    at = 0
    for char in run:
        if char in _PUNCTUATION:
            out.append(char)
            if at < len(phonemes) and phonemes[at] in _PUNCTUATION:
                at += 1
            continue
        mine: list[str] = []
        while at < len(phonemes):
            name = phonemes[at]
            if name == _SYLLABLE_END:
                at += 1
                break
            if name in _PUNCTUATION:
                break
            mine.append(name)
            at += 1
        out.append(_tokens(mine) if char not in safe_chars and mine else char)
    return "".join(out)


def g2p_infer(text: str, user_readings: Mapping[str, str] | None = None) -> str:
    """Upstream's `g2p_infer` on normalised text; `user_readings` (text -> replacement) are merged over
    upstream's replacement dictionary as upstream's `replace_dict.update` would."""
    data = g2p_data()
    replacements: dict[str, Any] = {**data.replacements, **(user_readings or {})}
    out: list[str] = []
    for fragment, replaced in apply_replacements(text, replacements):
        if replaced:
            out.append(fragment)
            continue
        for run, zh in chinese_runs(fragment):
            if not zh:
                out.append(run)
                continue
            try:
                out.append(align(run, run_phonemes(run), data.safe_chars))
            except Exception as exc:  # upstream keeps the run as text when its G2P fails
                log.warning("G2P failed on %r (%s); it is read as text", run, exc)
                out.append(run)
    return "".join(out)


def substitute(text: str, entries: Mapping[str, str]) -> str:
    """`text` with each entry's key replaced by its value, longest key first, in one pass (a value is never
    read again)."""
    return "".join(fragment for fragment, _ in apply_replacements(text, entries)) if entries else text


def as_read(segment: str, phoneme_mode: bool, readings: Mapping[str, str]) -> str:
    """The string the LLM reads for one normalised segment: upstream's `g2p_infer` in phoneme mode (the
    user's readings merged over upstream's dictionary); in text mode the segment with only the user's
    readings put in (none: exactly upstream's text path)."""
    return g2p_infer(segment, readings) if phoneme_mode else substitute(segment, readings)


def reading_tokens(reading: str) -> str:
    """Pinyin with tone numbers ("chong2 qing4", "lv4", "lü4") as the model's phoneme tokens, converted as
    upstream's G2P converts pypinyin's output; raises ReadingError naming a syllable outside the 204 tokens."""
    from pypinyin import Style
    from pypinyin.contrib.tone_convert import tone3_to_tone
    from pypinyin.style import convert

    known = set(g2p_data().phonemes)
    words = reading.lower().replace("u:", "ü").split()
    if not words:
        raise ReadingError("the reading is empty")
    names: list[str] = []
    for word in words:
        syllables = _TONED_SYLLABLE.findall(word)
        if "".join(s + t for s, t in syllables) != word:
            raise ReadingError(f"{word!r} is not pinyin syllables each followed by a tone number 1-5")
        for letters, tone in syllables:
            syllable = letters + tone
            if not "1" <= tone <= "5":
                raise ReadingError(f"{syllable!r} has tone {tone}: tones are 1-4, and 5 for the neutral tone")
            marked = tone3_to_tone(syllable.replace("ü", "v"))
            initial = convert(marked, Style.INITIALS, strict=True)
            final = convert(marked, Style.FINALS_TONE3, strict=True)
            final = final if final[-1:].isdigit() else final + "5"
            parts = [p.upper() for p in _syllable_parts(initial, final)]
            unknown = [p for p in parts if p not in known]
            if unknown or not final:
                raise ReadingError(f"{syllable!r} is not a syllable the model has phoneme tokens for")
            names.extend(parts)
    return "".join(f"<|{name}|>" for name in names)


def preload() -> None:
    """Build jieba's dictionary and read the data files now (server start) instead of on first use."""
    g2p_data()
    _segmenter()
