"""Upstream's phoneme-in frontend (g2p_infer): the golden strings, the readings dictionaries use, and jieba's
side effects (no cache file anywhere, nothing on stdout)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from glmtts_mcp.engine.frontend.g2p import (
    ReadingError,
    apply_replacements,
    g2p_data,
    g2p_infer,
    reading_tokens,
)
from glmtts_mcp.engine.parity.text_cases import run_text_phoneme_case

SHARED_CASE = Path(__file__).resolve().parents[3] / "shared" / "golden" / "text_phoneme"


def test_golden_through_parity_runner(golden_case: Callable[..., tuple[Path, dict]]) -> None:
    folder, case = golden_case("text_phoneme")
    result = run_text_phoneme_case(folder, case)
    assert result.passed, result.detail
    assert result.detail == "30 strings equal"


@pytest.mark.skipif(not SHARED_CASE.is_dir(), reason="the shared golden folder is not beside this checkout")
def test_shared_golden_copy_passes_too() -> None:
    case = json.loads((SHARED_CASE / "case.json").read_text(encoding="utf-8"))
    result = run_text_phoneme_case(SHARED_CASE, case)
    assert result.passed, result.detail


def test_runner_reports_a_wrong_string(tmp_path: Path, golden_case: Callable[..., tuple[Path, dict]]) -> None:
    folder, case = golden_case("text_phoneme")
    data = json.loads((folder / "cases.json").read_text(encoding="utf-8"))
    data["user_dict"]["行长"] = "<|X|><|ING2|><|ZH|><|ANG3|>"  # the user dictionary changes an expected reading
    (tmp_path / "cases.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    result = run_text_phoneme_case(tmp_path, case)
    assert not result.passed and result.max_abs >= 1.0
    assert "g2p_infer_with_user_dict" in result.detail


def test_data_files_are_upstreams() -> None:
    data = g2p_data()
    assert len(data.safe_chars) == 3372
    assert len(data.phonemes) == 204 and data.phoneme_tokens[:2] == ("<|B|>", "<|C|>")
    assert data.replacements["弈"] == "<|I4|>"


def test_longest_key_first_and_no_rescan() -> None:
    fragments = apply_replacements("行长行", {"行": "A", "行长": "B", "B": "C"})
    assert fragments == [("B", True), ("A", True)]
    assert apply_replacements("xy", {}) == [("xy", False)]


def test_safe_characters_stay_text_others_become_tokens() -> None:
    assert g2p_infer("我们见面。") == "我们见面。"  # all in the safe list
    assert g2p_infer("你好") == "你<|H|><|AO3|>"  # 好 is a polyphone: not safe
    assert g2p_infer("银行") == "银<|H|><|ANG2|>"
    assert g2p_infer("abc 行") == "abc <|X|><|ING2|>"


def test_user_readings_win_over_g2p() -> None:
    assert g2p_infer("行长见。", {"行长": reading_tokens("hang2 zhang3")}) == "<|H|><|ANG2|><|ZH|><|ANG3|>见。"


@pytest.mark.parametrize(
    ("reading", "tokens"),
    [
        ("chong2 qing4", "<|CH|><|ONG2|><|Q|><|ING4|>"),
        ("chong2qing4", "<|CH|><|ONG2|><|Q|><|ING4|>"),
        ("yue4", "<|VE4|>"),
        ("lü4", "<|L|><|V4|>"),
        ("lv4", "<|L|><|V4|>"),
        ("zhi1 si3", "<|ZH|><|III1|><|S|><|II3|>"),
        ("de5", "<|D|><|E5|>"),
        ("Cui1", "<|C|><|UEI1|>"),
    ],
)
def test_readings_become_upstreams_tokens(reading: str, tokens: str) -> None:
    assert reading_tokens(reading) == tokens


@pytest.mark.parametrize(
    ("reading", "named"),
    [
        ("chong6", "tone 6"),
        ("chong0", "tone 0"),
        ("zzz3", "'zzz3'"),
        ("m2", "'m2'"),
        ("chong", "'chong'"),
        ("", "empty"),
        ("hang2 x", "'x'"),
    ],
)
def test_bad_readings_are_named(reading: str, named: str) -> None:
    with pytest.raises(ReadingError, match=named):
        reading_tokens(reading)


def test_jieba_writes_no_cache_and_nothing_to_stdout(tmp_path: Path) -> None:
    """jieba would write its prefix-dictionary cache to the temporary folder and may log: neither happens."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    code = "from glmtts_mcp.engine.frontend.g2p import g2p_infer; g2p_infer('银行行长在长城上行走。')"
    env = {**os.environ, "TMPDIR": str(temp), "TMP": str(temp), "TEMP": str(temp)}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert list(temp.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp"]
