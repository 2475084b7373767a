"""A script's sample offsets hold in every output format: a click written at sample N decodes at sample N
from wav, flac, ogg and mp3 alike (libsndfile accounts for the codecs' priming), so cue times follow the
audio whatever the format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from glmtts_mcp.app.audio_out import AudioFileWriter
from glmtts_mcp.engine.runtime.output_encoding import AUDIO_FORMATS


@pytest.mark.parametrize("fmt", sorted(AUDIO_FORMATS))
def test_a_sample_offset_is_where_the_decoder_finds_it(fmt: str, tmp_path: Path) -> None:
    rate = 24000
    pcm = np.zeros(2 * rate, dtype=np.float32)
    pcm[rate + 123] = 0.9
    writer = AudioFileWriter(tmp_path / f"click.{fmt}", fmt, rate)
    for start in range(0, len(pcm), 5000):  # written in pieces, as a script writes its lines
        writer.write(pcm[start : start + 5000])
    decoded, decoded_rate = sf.read(writer.commit(), dtype="float32")
    assert decoded_rate == rate and len(decoded) == len(pcm)
    assert int(np.argmax(np.abs(decoded))) == rate + 123
