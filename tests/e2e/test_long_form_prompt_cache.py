"""Upstream's long-form prompt cache (glmtts_inference.get_cached_prompt), reproduced by the pipeline."""

from __future__ import annotations

from glmtts_mcp.engine.runtime.pipeline import MAX_HISTORY_SPEECH_TOKENS, _History


def _history(prompt_speech: int, segments: list[int], text_len: int = 10) -> _History:
    history = _History(text_ids=[[1] * text_len], speech_ids=[[0] * prompt_speech])
    for i, n in enumerate(segments, start=1):
        history.text_ids.append([100 + i] * text_len)
        history.speech_ids.append([i] * n)
    return history


def test_first_segment_uses_the_voice_prompt_alone() -> None:
    history = _history(120, [])
    text, speech = history.prompt_for(10)
    assert text == [1] * 10 and speech == [0] * 120


def test_history_follows_the_prompt_while_it_fits() -> None:
    history = _history(100, [150, 150])  # ratio 400/30: the next 10 tokens expect 133 -> 533 fits
    text, speech = history.prompt_for(10)
    assert text == [1] * 10 + [101] * 10 + [102] * 10
    assert speech == [0] * 100 + [1] * 150 + [2] * 150


def test_oldest_segments_are_dropped_first_and_the_prompt_is_kept() -> None:
    history = _history(100, [200, 200, 200])  # 700 + estimate 175 > 750: drop segment 1 only
    text, speech = history.prompt_for(10)
    assert speech == [0] * 100 + [2] * 200 + [3] * 200 and text[:10] == [1] * 10 and 101 not in text
    assert len(speech) <= MAX_HISTORY_SPEECH_TOKENS
    long_prompt = _history(800, [100])  # the voice prompt alone exceeds the cap: it is still kept
    text, speech = long_prompt.prompt_for(10)
    assert speech == [0] * 800 and len(long_prompt.speech_ids) == 1
