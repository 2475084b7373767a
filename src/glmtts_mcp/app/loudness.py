"""One loudness for every line of a script: ITU-R BS.1770 integrated loudness, measured with pyloudnorm.

The measure needs a line's whole audio (its gating looks at every 400 ms block), so a line is held in
memory until it is measured; a line is bounded by the text limit, a script is not, and a script holds
only the lines in flight. A line shorter than one 400 ms block is measured on itself repeated to fill a block:
the same mean power, so the same loudness, where pyloudnorm alone would refuse it. Silence (no block
above the -70 LUFS absolute gate) is left as it is. A gain that would push a sample past full scale is
lowered until the peak sits just below it, and the line reports the loudness it got.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyloudnorm

BLOCK_S = 0.4  # BS.1770's gating block
PEAK_CEILING = 0.98  # the highest sample a gain may produce (16-bit and codecs keep a little headroom)


@dataclass(frozen=True)
class Leveled:
    """A line brought to the target: its samples, what it measured before and after, the gain applied."""

    pcm: np.ndarray
    measured_lufs: float | None  # None: silent (below the absolute gate)
    lufs: float | None
    gain_db: float
    peak_limited: bool


def integrated_loudness(pcm: np.ndarray, sample_rate: int) -> float | None:
    """The integrated loudness of mono `pcm` in LUFS; None for silence."""
    samples = np.asarray(pcm, dtype=np.float64)
    if not len(samples):
        return None
    block = math.ceil(BLOCK_S * sample_rate)
    if len(samples) < block:
        samples = np.resize(samples, block)  # repeated: the same mean power over one whole block
    value = float(pyloudnorm.Meter(sample_rate).integrated_loudness(samples))
    return value if math.isfinite(value) else None


def level_line(pcm: np.ndarray, sample_rate: int, target_lufs: float) -> Leveled:
    """`pcm` scaled to `target_lufs` (never past `PEAK_CEILING`)."""
    pcm = np.asarray(pcm, dtype=np.float32)
    measured = integrated_loudness(pcm, sample_rate)
    if measured is None:
        return Leveled(pcm, None, None, 0.0, False)
    gain_db = target_lufs - measured
    peak = float(np.max(np.abs(pcm)))
    limited = peak * 10 ** (gain_db / 20) > PEAK_CEILING
    if limited:
        gain_db = 20 * math.log10(PEAK_CEILING / peak)
    leveled = (pcm * np.float32(10 ** (gain_db / 20))).astype(np.float32)
    return Leveled(leveled, measured, measured + gain_db, gain_db, limited)
