"""One copy of a voice's features where it is used: synthesis reads the library's shared
tensors as they are, never writes into them, turns the prompt ids into lists and puts the flow's prompt
on the device once per narration (not once per segment), and the audio is what it was."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
import soundfile as sf
import torch
from torch.overrides import TorchFunctionMode

from glmtts_mcp.app.audio_out import AudioFileWriter
from glmtts_mcp.app.core import App
from glmtts_mcp.app.narration import NarrationRequest
from glmtts_mcp.app.saving import narrate_to_path
from glmtts_mcp.engine.types import SynthesisOptions, VoiceFeatures

# Normalized, this is two segments (the synthesis splits it by length).
TWO_SEGMENTS = (
    "Hello there, this is the first sentence of a longer story. And here comes a second one, a little longer "
    "than the first, with a few more words in it! The third sentence ends it, as all stories must end somewhere."
)


class FeatureCalls(TorchFunctionMode):
    """The torch calls made on the voice's own tensors in this thread (the synthesis' thread), attribute
    reads left out (the library reads each tensor's version on a hit)."""

    def __init__(self, tensors: Mapping[str, torch.Tensor]) -> None:
        super().__init__()
        self._names = {id(tensor): name for name, tensor in tensors.items()}
        self.calls: list[tuple[str, str]] = []

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = getattr(func, "__name__", str(func))
        if args and id(args[0]) in self._names and name != "__get__":
            self.calls.append((self._names[id(args[0])], name))
        return func(*args, **(kwargs or {}))


@pytest.mark.slow
def test_synthesis_reads_the_shared_features_once_per_narration(engine_app: App, clip: Path, tmp_path: Path) -> None:
    engine = engine_app.host.ensure_loaded()
    request = NarrationRequest(text=TWO_SEGMENTS, reference=clip, transcript="hi", seed=5)
    ready, done, first = anyio.run(narrate_to_path, engine_app, request, tmp_path / "first.wav", "wav")
    assert done.segments == 2
    loaded = engine_app.library.load_features(ready.voice_id, engine.device)
    assert loaded.tier == "memory"
    shared = loaded.tensors
    versions = {name: tensor._version for name, tensor in shared.items()}
    with FeatureCalls(shared) as seen:  # the synthesis runs in this thread, where the mode sees its calls
        chunks = list(engine.synthesize(TWO_SEGMENTS, VoiceFeatures(tensors=shared), SynthesisOptions(seed=5)))
    again = engine_app.library.load_features(ready.voice_id, engine.device).tensors
    assert all(again[name].data_ptr() == tensor.data_ptr() for name, tensor in shared.items())  # no copy per hit
    assert {name: tensor._version for name, tensor in shared.items()} == versions  # never written into
    assert sorted(seen.calls) == sorted(
        [  # once for the whole narration, not once per segment
            ("prompt_text_ids", "tolist"),
            ("prompt_speech_ids", "tolist"),
            ("prompt_speech_ids", "to"),
            ("prompt_mel", "to"),
            ("speaker_embedding", "to"),
            ("prompt_speech_ids", "__getitem__"),
            ("prompt_mel", "__getitem__"),
            ("speaker_embedding", "__getitem__"),
        ]
    )
    second = AudioFileWriter(tmp_path / "second.wav", "wav", chunks[0].sample_rate)
    second.write(np.concatenate([chunk.pcm for chunk in chunks]))
    first_pcm, second_pcm = sf.read(first, dtype="int16")[0], sf.read(second.commit(), dtype="int16")[0]
    assert len(first_pcm) > 0 and np.array_equal(first_pcm, second_pcm)  # the same audio
