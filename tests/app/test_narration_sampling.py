"""The sampling knobs a caller may set (temperature, top_p): given, they reach the RAS sampler and change the
drawn tokens; left out, the narration samples as upstream does, bit for bit as before they existed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from glmtts_mcp.app.core import App
from glmtts_mcp.app.narration import Audio, Narration, NarrationRequest, VoiceReady
from glmtts_mcp.engine.models import llm
from glmtts_mcp.engine.models.llm import RasSettings
from glmtts_mcp.engine.types import SynthesisOptions, VoiceFeatures
from glmtts_mcp.errors import Term, UserError

pytestmark = pytest.mark.anyio

TEXT = "Sampling decides every token of this sentence."


@pytest.fixture
def draws(monkeypatch: pytest.MonkeyPatch) -> list[tuple[RasSettings, int]]:
    """Every RAS draw of the engine: the settings it used and the id it chose."""
    seen: list[tuple[RasSettings, int]] = []
    real = llm.ras_sample

    def spy(*args: object) -> tuple[int, int, int]:
        chosen = real(*args)  # type: ignore[arg-type]
        seen.append((args[3], chosen[0]))  # type: ignore[arg-type]
        return chosen

    monkeypatch.setattr(llm, "ras_sample", spy)
    return seen


async def _narrate(app: App, request: NarrationRequest) -> tuple[np.ndarray, str]:
    pieces, voice = [], ""
    async with Narration(app, request) as narration:
        async for event in narration:
            if isinstance(event, VoiceReady):
                voice = event.voice_id
            elif isinstance(event, Audio):
                pieces.append(event.pcm)
    return np.concatenate(pieces), voice


async def test_knobs_reach_the_sampler_and_absent_ones_change_nothing(
    make_app: Callable[..., App], clip: Path, draws: list[tuple[RasSettings, int]]
) -> None:
    app = make_app()
    _, voice = await _narrate(app, NarrationRequest(text="Hi.", reference=clip, transcript="hi"))

    async def run(**knobs: float) -> tuple[np.ndarray, set[RasSettings], list[int]]:
        draws.clear()
        pcm, _ = await _narrate(app, NarrationRequest(text=TEXT, voice=voice, seed=5, **knobs))
        return pcm, {settings for settings, _ in draws}, [token for _, token in draws]

    plain, plain_settings, plain_tokens = await run()
    assert plain_settings == {RasSettings()}  # upstream's: temperature 1.0, top_p 0.8, top_k 25

    def engine_today() -> np.ndarray:  # the engine called as the narration called it before the knobs existed
        engine = app.host.ensure_loaded()
        loaded = app.library.load_features(voice, engine.device)
        features = VoiceFeatures(tensors=loaded.tensors, digest=loaded.record.features_sha256)
        return np.concatenate([c.pcm for c in engine.synthesize(TEXT, features, SynthesisOptions(seed=5))])

    assert np.array_equal(plain, await app.host.work(engine_today))
    explicit, _, explicit_tokens = await run(temperature=1.0, top_p=0.8)
    assert np.array_equal(plain, explicit) and explicit_tokens == plain_tokens

    # The tiny checkpoint's random LLM is nearly flat over its 25 candidates: a sharp temperature moves the draws.
    sharp, sharp_settings, sharp_tokens = await run(temperature=0.1, top_p=0.5)
    assert sharp_settings == {RasSettings(temperature=0.1, top_p=0.5)}
    assert sharp_tokens != plain_tokens and not np.array_equal(sharp, plain)


@pytest.mark.parametrize(
    ("knob", "value", "term"), [("temperature", 1.6, Term.TEMPERATURE), ("top_p", 0.4, Term.TOP_P)]
)
def test_knobs_out_of_range_are_refused(knob: str, value: float, term: Term) -> None:
    with pytest.raises(UserError, match=f"is {value:g}") as caught:
        NarrationRequest(text="Hi.", voice="v", **{knob: value})  # type: ignore[arg-type]
    assert caught.value.argument == term
    with pytest.raises(UserError):
        NarrationRequest(text="Hi.", voice="v", temperature=float("nan"))
