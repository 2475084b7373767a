"""Text frontend: upstream GLM-TTS's text normalization and length-based sentence splitting.

Mirrors ``cosyvoice.cli.frontend.TextFrontEnd.text_normalize`` and ``split_by_len`` (zai-org/GLM-TTS,
WeTextProcessing backend, ``use_phoneme=False``). The grammar work is done by the FSTs that
WeTextProcessing 1.0.3 compiles with upstream's options (built once by
``scripts/build_tn_grammars.py``, shipped in ``engine/frontend/tn/``) run with kaldifst; the Python steps
around them (WeTextProcessing's tag parsing and reordering, upstream's pre- and post-processing)
are re-implemented here.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import ClassVar, Literal

import emoji
import kaldifst

from glmtts_mcp.engine.frontend import g2p
from glmtts_mcp.engine.types import EngineError, Pronunciation

Language = Literal["zh", "en"]

GRAMMAR_DIR = Path(__file__).with_name("tn")

# Upstream's sentence-ending and splitting punctuation (cosyvoice/utils/frontend_utils.py).
PUNCTUATION_CHARS = "。？！；：、.?!;:，,"
_PUNCT_CLASS = "[" + re.escape(PUNCTUATION_CHARS) + "]"
_PUNCT_SET = frozenset(PUNCTUATION_CHARS)
_CJK = re.compile(r"[\u4e00-\u9fff]")
_LINE_ENDINGS = frozenset(".!?;:：。！？；，")

# configs/custom_replace.jsonl of upstream (read from the working directory there; applied to zh text).
_CUSTOM_REPLACEMENTS = (("噢", "哦"), ("欸", "诶"))

# Upstream's post-normalizer symbol maps for Chinese text, applied in this order.
_ZH_SYMBOLS: tuple[tuple[str, str], ...] = (
    ("†", "，"),
    ("²", "平方"),
    ("³", "立方"),
    ("/", "每"),
    ("~", "到"),
    ("～", "到"),
    ("①", "一"),
    ("②", "二"),
    ("③", "三"),
    ("④", "四"),
    ("⑤", "五"),
    ("⑥", "六"),
    ("⑦", "七"),
    ("⑧", "八"),
    ("⑨", "九"),
    ("⑩", "十"),
    ("α", "阿尔法"),
    ("β", "贝塔"),
    ("γ", "伽玛"),
    ("Γ", "伽玛"),
    ("δ", "德尔塔"),
    ("Δ", "德尔塔"),
    ("△", "德尔塔"),
    ("ε", "艾普西龙"),
    ("ζ", "捷塔"),
    ("η", "依塔"),
    ("θ", "西塔"),
    ("Θ", "西塔"),
    ("ι", "艾欧塔"),
    ("κ", "喀帕"),
    ("λ", "拉姆达"),
    ("Λ", "拉姆达"),
    ("μ", "缪"),
    ("ν", "拗"),
    ("ξ", "克西"),
    ("Ξ", "克西"),
    ("ο", "欧米克伦"),
    ("π", "派"),
    ("Π", "派"),
    ("ρ", "肉"),
    ("ς", "西格玛"),
    ("Σ", "西格玛"),
    ("σ", "西格玛"),
    ("τ", "套"),
    ("υ", "宇普西龙"),
    ("φ", "服艾"),
    ("Φ", "服艾"),
    ("χ", "器"),
    ("ψ", "普赛"),
    ("Ψ", "普赛"),
    ("ω", "欧米伽"),
    ("Ω", "欧米伽"),
    ("□", "方框"),
    (">", "大于"),
    ("<", "小于"),
    ("∈", "属于"),
    ("∉", "不属于"),
    ("∪", "并"),
    ("∩", "交"),
    ("⊥", "垂直"),
    ("∥", "平行"),
    ("≠", "不等于"),
    ("∵", "因为"),
    ("∴", "所以"),
    ("∅", "空集"),
    ("⊂", "真包含于"),
    ("⊃", "包含"),
    ("⊆", "包含于"),
    ("⊇", "真包含"),
    ("⊄", "不属于"),
    ("⊅", "非超集"),
    ("⊈", "不属于"),
    ("⊉", "非超集"),
)

_BRACKETS = ("(", ")", "（", "）", "【", "】", "「", "」", "`", "《", "》", "『", "』", "{", "}", "[", "]")

# WeTextProcessing's field orders per token type (tn/token_parser.py TN_ORDERS / EN_TN_ORDERS).
_FIELD_ORDERS: dict[Language, dict[str, tuple[str, ...]]] = {
    "zh": {
        "date": ("year", "month", "day"),
        "fraction": ("denominator", "numerator"),
        "measure": ("denominator", "numerator", "value"),
        "money": ("value", "currency"),
        "time": ("noon", "hour", "minute", "second"),
    },
    "en": {
        "date": ("preserve_order", "text", "day", "month", "year"),
        "money": ("integer_part", "fractional_part", "quantity", "currency_maj"),
    },
}


def contains_chinese(text: str) -> bool:
    """Upstream's routing test: any CJK unified ideograph sends the whole text down the zh path."""
    return _CJK.search(text) is not None


def detect_language(text: str) -> Language:
    """The language upstream normalizes ``text`` as: "zh" if it has any CJK ideograph, else "en"."""
    return "zh" if contains_chinese(text) else "en"


# ---------------------------------------------------------------------------------------------
# WeTextProcessing's processor: tagger FST -> parse and reorder tokens -> verbalizer FST
# ---------------------------------------------------------------------------------------------


class _Grammar:
    """One language's tagger and verbalizer FSTs, run by kaldifst (compose + single shortest path)."""

    def __init__(self, language: Language) -> None:
        prefix = GRAMMAR_DIR / f"{language}_tn"
        paths = [Path(f"{prefix}_tagger.fst"), Path(f"{prefix}_verbalizer.fst")]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise EngineError(
                f"text-normalization grammar missing: {', '.join(missing)}; reinstall glmtts-mcp "
                "or rebuild the grammars with scripts/build_tn_grammars.py"
            )
        self.language = language
        self._tagger = kaldifst.TextNormalizer(str(paths[0]))
        self._verbalizer = kaldifst.TextNormalizer(str(paths[1]))

    def normalize(self, text: str, chunk_chars: int = 0) -> str:
        """WeTextProcessing's Processor.normalize: verbalize(reorder(tag(text))).

        The tagger runs on `tagger_chunks` of the text (their token strings joined as the tagger joins
        tokens): its memory grows with its input, the verbalizer's some 400 times less.
        """
        if not text:
            return ""
        parts = [self._tagger.normalize(chunk) for chunk in tagger_chunks(text, self.language, chunk_chars)]
        tagged = " ".join(parts) if all(parts) else ""
        if not tagged:
            if text.strip():
                raise EngineError(f"text normalization found no reading for {text[:80]!r}; remove unusual characters")
            return ""
        tokens, malformed = _parse_tokens(tagged)
        spoken = self._verbalizer.normalize(_print_tokens(tokens, _FIELD_ORDERS[self.language]))
        if malformed and not spoken:  # upstream's pynini raises here (no path through the verbalizer)
            raise EngineError(
                f"text normalization cannot read {text[:80]!r}: quote marks or backslashes inside <...> break "
                "GLM-TTS's text normalizer (WeTextProcessing); remove them, or the angle brackets"
            )
        return spoken


# Where the tagger's input may be cut with the same result as tagging it whole. The tagger writes a
# sequence of tokens, each matched independently and joined by one space, so tagging two pieces
# gives the whole's tokens exactly when no token can span the cut. Tokens that do span sentence ends
# exist: "Jan. 5" (date), "No. 5" (range), "5 p.m. Then" (time), "A. B." (whitelist), "Mr. Smith".
# So a cut needs ordinary words on both sides: in English, whitespace after a lowercase word of 3+
# letters and its ".", "!" or "?", before a capital (the punctuation token keeps the whitespace, so
# the cut is after it); in Chinese, between an ideograph's "。", "！" or "？" and the next ideograph
# (the zh tagger reads each of those marks as a token of its own, "char").
# One thing is not local: the English grammar ranks some readings by weights of about 1e-4, lost in
# the float32 sum of a long text's path, so tagged whole a long text gets arbitrary ones among them
# ("1,024,000" after 156 characters: "one zero two fourzero zero zero"); in chunks it gets those
# its sentences get alone (tests/engine/test_text_chunks.py).
_TAGGER_CUTS: dict[Language, re.Pattern[str]] = {
    "en": re.compile(r"(?<=[a-z]{3}[.!?])\s+(?=[A-Z])"),
    "zh": re.compile(r"(?<=[\u4e00-\u9fff][。！？])(?=[\u4e00-\u9fff])"),
}


def tagger_chunks(text: str, language: Language, chunk_chars: int) -> list[str]:
    """The text in pieces of at most `chunk_chars` characters, cut only at `_TAGGER_CUTS`, that the
    tagger reads with the same tokens as the whole; the whole text if it fits (or chunk_chars is 0).

    A stretch without a safe cut stays in one piece, however long.
    """
    if chunk_chars <= 0 or len(text) <= chunk_chars:
        return [text]
    pieces: list[str] = []
    start = previous = 0
    for cut in [match.end() for match in _TAGGER_CUTS[language].finditer(text)] + [len(text)]:
        if cut - start > chunk_chars and previous > start:
            pieces.append(text[start:previous])
            start = previous
        previous = cut
    pieces.append(text[start:])
    return pieces


def reorder_tokens(tagged: str, orders: dict[str, tuple[str, ...]]) -> str:
    """Parse ``name { key: "value" ... }`` tokens and print them with each type's field order.

    Follows WeTextProcessing's TokenParser: types listed in ``orders`` print only the listed fields,
    in that order (unless the token says ``preserve_order: "true"``); other types keep their own
    order. Values keep their backslash escapes verbatim.
    """
    return _print_tokens(_parse_tokens(tagged)[0], orders)


Tokens = list[tuple[str, list[tuple[str, str]]]]


def _print_tokens(tokens: Tokens, orders: dict[str, tuple[str, ...]]) -> str:
    out = []
    for name, fields in tokens:
        values = dict(fields)
        keys: list[str] | tuple[str, ...] = [key for key, _ in fields]
        if name in orders and values.get("preserve_order") != "true":
            keys = orders[name]
        body = "".join(f' {key}: "{values[key]}"' for key in keys if key in values)
        out.append(f"{name} {{{body} }}")
    return " ".join(out)


def _parse_tokens(tagged: str) -> tuple[Tokens, bool]:
    """Tokens of a tagger output as (name, [(key, value), ...]), and whether the text was malformed.

    Read as WeTextProcessing's TokenParser reads it, leniently: each character of the separators
    `` { `` and ``: "`` is skipped only where it is present, a key may be empty, and a value runs to the
    next unescaped quote. The tagger does emit malformed text (its English emphasis rule passes a raw
    quote through in ``<...>``), and upstream verbalizes what this reading makes of it. Only what
    upstream cannot read at all (it loops or asserts) raises here.
    """
    tokens: Tokens = []
    end = len(tagged)
    malformed = False

    def skip_spaces(i: int) -> int:
        while i < end and tagged[i] == " ":
            i += 1
        return i

    def read_key(i: int) -> tuple[str, int]:
        if i < end and tagged[i] in "\t\n\r\x0b\x0c":  # upstream asserts against string.whitespace
            raise EngineError(f"malformed normalizer tags: whitespace where a key starts, near {tagged[i : i + 40]!r}")
        start = i
        while i < end and (tagged[i].isascii() and (tagged[i].isalpha() or tagged[i] == "_")):
            i += 1
        return tagged[start:i], i

    def skip_each(i: int, separator: str) -> int:
        nonlocal malformed
        for char in separator:
            if i < end and tagged[i] == char:
                i += 1
            else:
                malformed = True
        return i

    pos = skip_spaces(0)
    while pos < end:
        name, pos = read_key(pos)
        pos = skip_each(pos, " { ")
        fields: list[tuple[str, str]] = []
        while (pos := skip_spaces(pos)) < end:
            if tagged[pos] == "}":
                pos += 1
                break
            key, pos = read_key(pos)
            pos = skip_each(pos, ': "')
            start = pos
            while pos < end and tagged[pos] != '"':
                pos += 2 if tagged[pos] == "\\" else 1
            if pos >= end:
                raise EngineError(f"malformed normalizer tags: unterminated value of {key!r}")
            malformed = malformed or not key
            fields.append((key, tagged[start:pos]))
            pos += 1
        else:
            malformed = True  # the last token was not closed
        tokens.append((name, fields))
        pos = skip_spaces(pos)
    return tokens, malformed


class _Grammars:
    """Process-wide cache: each language's FSTs are read once, on first use."""

    _lock = threading.Lock()
    _loaded: ClassVar[dict[Language, _Grammar]] = {}

    @classmethod
    def get(cls, language: Language) -> _Grammar:
        grammar = cls._loaded.get(language)
        if grammar is None:
            with cls._lock:
                grammar = cls._loaded.get(language)
                if grammar is None:
                    grammar = cls._loaded[language] = _Grammar(language)
        return grammar


# ---------------------------------------------------------------------------------------------
# Upstream's steps around the normalizer (cosyvoice/cli/frontend.py, cosyvoice/utils/frontend_utils.py)
# ---------------------------------------------------------------------------------------------


def _preprocess(text: str) -> str:
    """Markdown list numbers, literal "\\n", line merging, emoji removal, letter-hyphen-letter."""
    text = re.sub(r"^(\d+)\. ", r"\1。", text)  # "1. item" at the very start keeps its number
    text = text.replace("\\n", "\n")
    text = _merge_lines(text)
    text = emoji.replace_emoji(text, replace="")
    return re.sub(r"(?<=[a-zA-Z])-(?=[a-zA-Z])", " ", text)


def _merge_lines(text: str) -> str:
    """Drop empty lines, end each line with punctuation, join (no separator if Chinese, else space)."""
    lines = []
    for line in text.split("\n"):
        line = line.strip()
        if not line:
            continue
        if line[-1] not in _LINE_ENDINGS:
            line = line.rstrip() + "。" if contains_chinese(line) else line + ". "
        lines.append(line)
    joined = "".join(lines)
    return joined if contains_chinese(joined) else " ".join(lines)


def number_to_chinese(number: int | float | str) -> str:
    """Upstream's reading of a number in Chinese for scientific notation (digits after 点 one by one)."""
    if isinstance(number, (float, str)):
        as_text = str(float(number))
        if "." in as_text:
            int_part, frac_part = as_text.split(".")
            if frac_part.strip("0") == "":
                return number_to_chinese(int(int_part))
            head = number_to_chinese(int(int_part)) if int(int_part) != 0 else "零"
            return head + "点" + "".join("零一二三四五六七八九"[int(d)] for d in frac_part)
    number = int(number)
    if number == 0:
        return "零"
    if number < 0:
        return "负" + number_to_chinese(-number)
    units = ("", "十", "百", "千", "万", "十万", "百万", "千万", "亿", "十亿", "百亿", "千亿")
    digits = "零一二三四五六七八九"
    pieces: list[str] = []
    position, zero_pending, last_unit = 0, False, ""
    while number > 0:
        digit = number % 10
        unit = units[position] if position < len(units) else ""
        if digit == 0:
            if not zero_pending and pieces and last_unit not in ("万", "亿"):
                pieces.append(digits[0])
                zero_pending = True
        else:
            if unit:
                pieces.append(unit)
            pieces.append(digits[digit])
            zero_pending = False
            last_unit = unit
        position += 1
        number //= 10
    result = "".join(reversed(pieces))
    result = re.sub(r"^一十", "十", result)
    result = re.sub(r"零+", "零", result)
    return re.sub(r"零$", "", result)


_SCIENTIFIC = re.compile(r"(.*?)(-?\d+(?:\.\d+)?)[*x×](\d+(?:\.\d+)?)\^(-?\d+(?:\.\d+)?)(.*?)$")


def _scientific_notation(text: str) -> str:
    """The first ``a×b^c`` in the text read out as "a乘b的c次方"."""
    match = _SCIENTIFIC.match(text)
    if match is None:
        return text
    prefix, base, multiplier, exponent, suffix = match.groups()
    reading = f"{number_to_chinese(base)}乘{number_to_chinese(multiplier)}的{number_to_chinese(exponent)}次方"
    return prefix + reading + suffix


def _remove_brackets(text: str, language: Language) -> str:
    pairs = _BRACKETS + (("‘", "’") if language == "zh" else ())
    for bracket in pairs:
        text = text.replace(bracket, "")
    return text


@lru_cache(maxsize=2)
def _asterisk_pattern(language: Language) -> re.Pattern[str]:
    """Upstream's four rules for a "*" that means multiplication (between numbers or letters)."""
    nums = "0-9" if language == "en" else "一二三四五六七八九十百千万亿"
    left, right = f"[{nums}a-zA-Z]", f"[{nums}a-zA-Z]"
    star = r"\s*\*\s*"
    rules = (
        f"(?<={left}){star}(?={right})",
        rf"(?<={left}\)){star}(?={right})",
        rf"(?<={left}){star}(?=\({right})",
        rf"(?<={left}\)){star}(?=\({right})",
    )
    return re.compile("|".join(rules))


def _replace_asterisks(text: str, language: Language) -> str:
    word = "multiply" if language == "en" else "乘"
    return _asterisk_pattern(language).sub(word, text).replace("*", "")


def _zh_pre_replace(text: str) -> str:
    text = _scientific_notation(text)
    text = re.sub(r"(?<=\d)\s*-\s*(?=\d)", "减", text)
    text = text.replace("-", "")
    text = re.sub("咯(" + _PUNCT_CLASS + ")", r"喽\1", text)
    for old, new in _CUSTOM_REPLACEMENTS:
        text = text.replace(old, new)
    return text


def _zh_special_replace(text: str) -> str:
    text = text.replace("\\", "")
    text = re.sub(r"(?<=\W)额(?=\W)", "呃", f" {text} ")
    text = re.sub(r"[~～]+", "。", text)
    return _replace_asterisks(text, "zh").strip()


def _zh_post_replace(text: str) -> str:
    text = _remove_brackets(text, "zh")
    text = text.replace(" - ", "，").replace("——", "，")
    text = re.sub(r"[,:：;；、]+", "，", text)
    text = re.sub(r"[.…]+", "。", text)
    text = re.sub(r"[_·]+", "", text)
    text = re.sub(r"""['"‘’“”|]+""", "", text)
    for old, new in _ZH_SYMBOLS:
        text = text.replace(old, new)
    return text


def _normalize_chinese(text: str, chunk_chars: int) -> str:
    text = _Grammars.get("zh").normalize(_zh_pre_replace(text), chunk_chars)
    return _zh_post_replace(_zh_special_replace(text))


@lru_cache(maxsize=1)
def _number_to_words() -> Callable[[str], str]:
    import inflect  # ~2 s to import (typeguard): only when digits survive the English grammar

    engine = inflect.engine()

    def words(digits: str) -> str:
        spoken = engine.number_to_words(digits)
        assert isinstance(spoken, str)  # a list only with wantlist=True
        return spoken

    return words


def _spell_out_digits(text: str) -> str:
    """Every run of digits left after the English normalizer, in words (inflect's defaults)."""
    out: list[str] = []
    start: int | None = None
    for i, char in enumerate(text):
        if char.isdigit():
            if start is None:
                start = i
            continue
        if start is not None:
            out.append(_number_to_words()(text[start:i]))
            start = None
        out.append(char)
    if start is not None:
        out.append(_number_to_words()(text[start:]))
    return "".join(out)


def _normalize_english(text: str, chunk_chars: int) -> str:
    text = _Grammars.get("en").normalize(text.replace("'", "’"), chunk_chars)
    text = _remove_brackets(text, "en")
    text = _replace_asterisks(text, "en")
    text = text.replace("—", " ").replace("’", "'")
    text = _spell_out_digits(text)
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"[^\w\s.,!?':;]", "", text).lower()
    for mark in ".,!?':;":
        text = re.sub(re.escape(mark) + "+", mark, text)
    text = re.sub(r"\s*([.,?!':;])\s*", r"\1 ", text)
    return text.strip()


def _keep_meaningful_spaces(text: str) -> str:
    """Collapse spaces; keep one only between ASCII letters/digits or after ASCII punctuation before one."""
    text = re.sub(r" +", " ", text)
    out = []
    for i, char in enumerate(text):
        if char != " ":
            out.append(char)
            continue
        prev = text[i - 1] if i > 0 else ""
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if _is_ascii_alnum(nxt) and (_is_ascii_alnum(prev) or (prev != "" and prev in ".,!?;:")):
            out.append(" ")
    return "".join(out)


def _is_ascii_alnum(char: str) -> bool:
    return char != "" and char.isascii() and char.isalnum()


def _normalize_punctuation(text: str) -> str:
    text = _keep_meaningful_spaces(text)
    text = re.sub(f"({_PUNCT_CLASS})\\1+", r"\1", text)
    text = re.sub(f"{_PUNCT_CLASS}(?={_PUNCT_CLASS})", "", text)
    return text.replace("#", "").replace("！", "。").replace("!", ".")


def _ensure_ending(text: str) -> str:
    """End with "?"/"？" as is, else replace or add the language's full stop."""
    if text and text[-1] in "？?":
        return text
    stop = "。" if contains_chinese(text) else "."
    if text and text[-1] in PUNCTUATION_CHARS:
        return text[:-1] + stop
    return text + stop


# ---------------------------------------------------------------------------------------------
# split_by_len: minimal sentences of at least min_len "characters", hard cuts above max_len
# ---------------------------------------------------------------------------------------------

_EN_SYLLABLE_WEIGHT = 0.7  # upstream: an English syllable lasts about 0.7 of a Chinese character


def _is_cjk_char(char: str) -> bool:
    name = unicodedata.name(char, "")
    return "CJK" in name or "IDEOGRAPH" in name


def _split_units(text: str) -> list[str]:
    """Units: single CJK characters, English words (with inner ' and -), other single characters;
    whitespace sticks to the unit before it."""
    units: list[str] = []
    word: list[str] = []
    for char in text:
        if not _is_cjk_char(char) and (char.isalpha() or (word and char in "'-")):
            word.append(char)
            continue
        if word:
            units.append("".join(word))
            word = []
        units.append(char)
    if word:
        units.append("".join(word))
    merged: list[str] = []
    for unit in units:
        if unit.isspace() and merged:
            merged[-1] += unit
        else:
            merged.append(unit)
    return merged


@lru_cache(maxsize=65536)
def _syllables(word: str) -> int:
    """CMUdict syllables of the first pronunciation, else upstream's vowel-group estimate."""
    import pronouncing

    phones = pronouncing.phones_for_word(word)
    if phones:
        return pronouncing.syllable_count(phones[0])
    groups = len(re.findall(r"(?!e$)[aeiouy]+", word.lower(), flags=re.I))
    if re.fullmatch(r"^[^aeiouy]*e$", word.lower(), flags=re.I):
        groups += 1
    return max(groups, 1)


def _weighted_length(units: list[str]) -> float:
    total = 0.0
    for unit in units:
        core = unit.strip()
        if core and core.isalpha() and core.isascii():
            total += _syllables(core) * _EN_SYLLABLE_WEIGHT
        else:
            total += 1
    return total


def _min_sentences(units: list[str], min_len: int) -> list[list[str]]:
    sentences: list[list[str]] = []
    current: list[str] = []
    for unit in units:
        current.append(unit)
        if unit.strip() in _PUNCT_SET and _weighted_length(current) >= min_len:
            sentences.append(current)
            current = []
    if current:
        sentences.append(current)
    return sentences


def _hard_split(sentence: list[str], max_len: int) -> list[list[str]]:
    """Cut a sentence longer than max_len after max_len units (taking a following punctuation mark).

    Upstream indexes unit max_len even when the weighted length exceeds max_len with fewer units
    (long English words) and then fails with IndexError; there we cut at the longest prefix whose
    weighted length is at most max_len instead.
    """
    pieces: list[list[str]] = []
    while _weighted_length(sentence) > max_len:
        if len(sentence) > max_len:
            cut = max_len + 1 if sentence[max_len].strip() in _PUNCT_SET else max_len
        else:
            cut = 1
            while cut < len(sentence) and _weighted_length(sentence[: cut + 1]) <= max_len:
                cut += 1
        pieces.append(sentence[:cut])
        sentence = sentence[cut:]
    if sentence:
        pieces.append(sentence)
    return pieces


_AS_WRITTEN = Pronunciation()  # upstream's text path, no dictionary


class TextFrontend:
    """Upstream GLM-TTS's text frontend (normalization and splitting); cheap to construct.

    Grammars load on first use of each language and are shared by all instances. ``chunk_chars`` above 0
    bounds the tagger's memory on long texts: see `tagger_chunks` (0: the whole text at once, as upstream).
    """

    def __init__(self, chunk_chars: int = 0) -> None:
        self.chunk_chars = chunk_chars

    def normalize(self, text: str) -> str:
        """Upstream's ``TextFrontEnd.text_normalize``: the text the LLM is given."""
        text = _preprocess(text)
        if contains_chinese(text):
            text = _normalize_chinese(text, self.chunk_chars).lower()
        else:
            text = _normalize_english(text, self.chunk_chars)
        return _ensure_ending(_normalize_punctuation(text))

    def split_by_len(self, text: str, min_len: int = 30, max_len: int = 60) -> list[str]:
        """Upstream's ``split_by_len``: sentences of at least ``min_len`` weighted characters, cut at ``max_len``.

        English words weigh 0.7 per syllable, everything else 1. Leading whitespace is dropped
        (upstream fails an assertion on it).
        """
        units = _split_units(text.lstrip())
        return [
            "".join(piece) for sentence in _min_sentences(units, min_len) for piece in _hard_split(sentence, max_len)
        ]

    def synthesis_segments(
        self, text: str, min_len: int = 30, max_len: int = 60, pronunciation: Pronunciation = _AS_WRITTEN
    ) -> list[str]:
        """What upstream feeds the LLM for one request: normalize, split, normalize each segment; then, per
        `pronunciation`, the user's respellings first and readings (or phoneme-in's G2P) last."""
        text = g2p.substitute(text, dict(pronunciation.respellings))
        segments = [self.normalize(piece) for piece in self.split_by_len(self.normalize(text), min_len, max_len)]
        readings = dict(pronunciation.readings)
        return [g2p.as_read(segment, pronunciation.mode == "phoneme", readings) for segment in segments]

    @staticmethod
    def preload(*languages: Language) -> None:
        """Read the grammars and word lists now (e.g. at server start) instead of on the first request."""
        import pronouncing

        for language in languages or ("zh", "en"):
            _Grammars.get(language)
        if "en" in (languages or ("en",)):
            _number_to_words()
        pronouncing.init_cmu()
