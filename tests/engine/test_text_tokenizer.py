"""The checkpoint text tokenizer against upstream's ids (golden cases) and its refusals."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from glmtts_mcp.engine.frontend.text_tokenizer import (
    AddedTokenSplitter,
    SpecialTokenIds,
    TextTokenizer,
    TokenizerError,
    read_added_tokens,
)
from glmtts_mcp.engine.parity.llm_cases import run_text_tokenizer_case

CASES = ("text_tokenizer", "text_tokenizer_full")


@pytest.mark.parametrize("name", CASES)
def test_golden_case_passes(name: str, golden_case: Callable[..., tuple[Path, dict]]) -> None:
    folder, case = golden_case(name)
    result = run_text_tokenizer_case(folder, case)
    assert result.passed, result.detail


@pytest.mark.parametrize("name", CASES)
def test_split_matches_upstream_pieces(name: str, golden_case: Callable[..., tuple[Path, dict]]) -> None:
    """The added-token split is the one HF's trie makes (earliest match, longest there, no strip)."""
    folder, _ = golden_case(name)
    expected = json.loads((folder / "cases.json").read_text())
    added = read_added_tokens(folder / "tokenizer" / "tokenizer_config.json")
    by_id = {i: t for t, i in added.items()}
    splitter = AddedTokenSplitter(added)
    for case in expected["cases"]:
        pieces = [by_id[p] if isinstance(p, int) else p for p in splitter.split(case["input"])]
        assert pieces == case["pieces"], case["input"]


def test_full_tokenizer_special_ids_and_sizes(golden_case: Callable[..., tuple[Path, dict]]) -> None:
    folder, _ = golden_case("text_tokenizer_full")
    start = time.perf_counter()
    tokenizer = TextTokenizer.from_dir(folder / "tokenizer")
    elapsed = time.perf_counter() - start
    facts = json.loads((folder / "cases.json").read_text())["tokenizer_facts"]
    assert tokenizer.special_token_ids() == SpecialTokenIds(pad=656, eoa=663, boa=670, ats=881, ate=33648)
    assert tokenizer.base_vocab_size == facts["vocab_size_attr"]
    assert tokenizer.vocab_size == facts["len_tokenizer"]
    assert tokenizer.encode("") == []
    print(f"\nloaded 33k added tokens in {elapsed:.2f} s")  # a figure, not a gate: benchmarks time things


def write_tokenizer(folder: Path, added: list[str]) -> Path:
    """A minimal folder in the official layout: 256 single-byte ranks, added tokens from id 256."""
    folder.mkdir()
    lines = [f"{base64.b64encode(bytes([b])).decode()} {b}" for b in range(256)]
    (folder / "tokenizer.model").write_text("\n".join(lines) + "\n")
    decoder = {
        str(256 + i): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for i, t in enumerate(added)
    }
    (folder / "tokenizer_config.json").write_text(json.dumps({"added_tokens_decoder": decoder}))
    return folder


SPECIALS = ["<|endoftext|>", "<|user|>", "<|begin_of_audio|>", "<|audio_0|>", "<|audio_1|>", "<|audio_32767|>"]


def test_minimal_folder_reads(tmp_path: Path) -> None:
    tokenizer = TextTokenizer.from_dir(write_tokenizer(tmp_path / "tok", SPECIALS))
    assert tokenizer.special_token_ids() == SpecialTokenIds(pad=256, eoa=257, boa=258, ats=259, ate=261)
    # ate is looked up by string, not computed as ats + 32767
    assert tokenizer.encode("ab<|audio_1|> ") == [ord("a"), ord("b"), 260, ord(" ")]


@pytest.mark.parametrize("missing", ["<|user|>", "<|begin_of_audio|>", "<|audio_0|>", "<|audio_32767|>"])
def test_missing_special_token_is_named(tmp_path: Path, missing: str) -> None:
    tokenizer = TextTokenizer.from_dir(write_tokenizer(tmp_path / "tok", [t for t in SPECIALS if t != missing]))
    with pytest.raises(TokenizerError, match=f"{missing}.*tokenizer_config.json"):
        tokenizer.special_token_ids()


def test_special_token_below_endoftext_is_refused(tmp_path: Path) -> None:
    order = ["<|user|>"] + [t for t in SPECIALS if t != "<|user|>"]
    tokenizer = TextTokenizer.from_dir(write_tokenizer(tmp_path / "tok", order))
    with pytest.raises(TokenizerError, match=r"<\|user\|> \(eoa\) has id 256, below <\|endoftext\|> \(257\)"):
        tokenizer.special_token_ids()


def test_missing_files_are_named(tmp_path: Path) -> None:
    folder = write_tokenizer(tmp_path / "tok", SPECIALS)
    (folder / "tokenizer_config.json").unlink()
    with pytest.raises(TokenizerError, match=r"tokenizer_config.json is missing"):
        TextTokenizer.from_dir(folder)


def test_bad_rank_line_is_named(tmp_path: Path) -> None:
    folder = write_tokenizer(tmp_path / "tok", SPECIALS)
    (folder / "tokenizer.model").write_text("not-base64-at-all\n")
    with pytest.raises(TokenizerError, match="line 1"):
        TextTokenizer.from_dir(folder)
