"""Long texts normalized in tagger chunks give exactly what normalizing them whole gives, in bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from glmtts_mcp.config import Settings
from glmtts_mcp.engine.frontend import text_normalize as text_module
from glmtts_mcp.engine.frontend.text_normalize import TextFrontend, detect_language

TESTS = Path(__file__).resolve().parents[1]
DIFFERENTIAL = json.loads((TESTS / "engine" / "data" / "tn_differential.json").read_text(encoding="utf-8"))
GOLDEN = json.loads((TESTS / "golden" / "text_frontend" / "cases.json").read_text(encoding="utf-8"))

# Numbers, dates, money, times, abbreviations and initials on either side of sentence ends.
NEAR_CUTS = [
    (
        "He paid $5. Then it was Jan. 5, 2020 at 3:30 p.m. Then Mr. Smith left. No. 5 won. See the U.S. Army. "
        "Prices rose 12%. The rest cost £3.50! Was it 10 kg? Yes it was. Dr. Who came. On Sept. The end. "
        "It is etc. And more. A. B. C. D. went home. Tomorrow at 5 a.m. Then sleep. "
    ),
    "Chapter one is done. 2 more to go. Chapter two starts! It is 1999. Really? In 2020. Yes. Version 2.0. Then 3. ",
    (
        "今天是2024年3月15日。气温18.5摄氏度！明天呢？会下雨。他花了￥5.5元。第1。2。3个。时间10:30。好的。"
        "约1.5万人。增长了35%。下午3点半。电话是13800138000。Hello world. 你好。Mr. Smith说。完。"
    ),
]


def corpus() -> list[str]:
    texts = [case["input"] for case in GOLDEN]
    texts += [case["input"] for case in DIFFERENTIAL["cases"] + DIFFERENTIAL["fuzz_cases"]]
    return texts + NEAR_CUTS


def concatenations() -> list[str]:
    """Every text of the corpus run together, per language and mixed: cuts fall between cases."""
    texts = corpus()
    english = [t for t in texts if detect_language(t) == "en"]
    chinese = [t for t in texts if detect_language(t) == "zh"]
    return [" ".join(english), "".join(chinese), "\n\n".join(texts), " ".join(NEAR_CUTS * 3)]


@pytest.fixture(scope="module")
def whole() -> TextFrontend:
    return TextFrontend()


@pytest.fixture(scope="module")
def chunked() -> TextFrontend:
    return TextFrontend(chunk_chars=1)  # cut at every safe cut: the most cuts these texts allow


def test_every_corpus_text_normalizes_the_same_in_chunks(whole: TextFrontend, chunked: TextFrontend) -> None:
    failures = {t: c for t in corpus() if (c := chunked.synthesis_segments(t)) != whole.synthesis_segments(t)}
    assert failures == {}


@pytest.mark.slow
def test_concatenated_corpus_normalizes_the_same_in_chunks(whole: TextFrontend, chunked: TextFrontend) -> None:
    """All but the English run-together (next test): its whole reading is not the one its sentences get."""
    for text in concatenations()[1:]:
        assert chunked.synthesis_segments(text) == whole.synthesis_segments(text)
        assert TextFrontend(chunk_chars=400).normalize(text) == whole.normalize(text)


def test_a_long_english_text_whole_misreads_numbers_that_chunks_read_right(whole: TextFrontend) -> None:
    """The English grammar prefers readings by weights of about 1e-4; summed over a long text in float32
    they vanish, and the tagger of a whole text picks any tied reading (`tagger_chunks`)."""
    sentence = "The population grew to 1,024,000 people."
    before = "Hello there, this is one sentence of a longer story that goes on for a while. " * 2
    alone = "the population grew to one million twenty four thousand people."
    assert whole.normalize(sentence) == alone
    assert whole.normalize(before + sentence).endswith("to one zero two fourzero zero zero people.")
    assert TextFrontend(chunk_chars=1).normalize(before + sentence).endswith(alone)


def test_the_corpus_is_cut() -> None:
    """The equality above is not vacuous: the corpus is cut in many places, in both languages."""
    english, chinese = concatenations()[:2]
    assert len(text_module.tagger_chunks(english, "en", 1)) > 30
    assert len(text_module.tagger_chunks(chinese, "zh", 1)) > 30


def test_chunks_are_bounded_and_join_back() -> None:
    text = "Hello there, this is one sentence of a longer story that goes on for a while. " * 10
    pieces = text_module.tagger_chunks(text, "en", 300)
    assert "".join(pieces) == text and [len(p) for p in pieces] == [234, 234, 234, 78]
    assert text_module.tagger_chunks(text, "en", 0) == [text]
    assert text_module.tagger_chunks(text, "en", len(text)) == [text]
    uncut = "Jan. 5 and No. 5 and 5 p.m. Then " * 20  # no safe cut: one piece, however long
    assert text_module.tagger_chunks(uncut, "en", 50) == [uncut]


# Peak RSS (KiB) the normalizer adds to a process that has loaded the grammars: the kernel's high-water
# mark is reset after the warm-up (`clear_refs` 5), so an earlier transient peak cannot hide this one.
_PEAK = """
import sys
from glmtts_mcp.engine.frontend.text_normalize import TextFrontend

def kib(field):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field))

frontend = TextFrontend(chunk_chars=int(sys.argv[2]))
frontend.synthesis_segments("Hi.")
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")
before = kib("VmRSS:")
frontend.synthesis_segments(sys.argv[1])
print(kib("VmHWM:") - before)
"""


def normalizer_peak_mib(text: str, chunk_chars: int) -> float:
    done = subprocess.run(
        [sys.executable, "-c", _PEAK, text, str(chunk_chars)], capture_output=True, text=True, check=True, timeout=600
    )
    return int(done.stdout.split()[-1]) / 1024


@pytest.mark.slow
def test_a_20_times_longer_text_needs_no_more_memory() -> None:
    sentence = "Hello there, this is one sentence of a longer story that goes on for a while. "
    chunk_chars = Settings.model_fields["text_chunk_chars"].default
    short = normalizer_peak_mib(sentence * 4, chunk_chars)
    long = normalizer_peak_mib(sentence * 80, chunk_chars)
    assert long < short + 40, f"peak {long:.0f} MiB for 80 sentences against {short:.0f} MiB for 4"
    assert normalizer_peak_mib(sentence * 80, 0) > long + 300  # whole, as upstream: the memory this saves
