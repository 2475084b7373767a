"""What the loaded checkpoint allows in each feature tensor, and the check of tensors against a re-extraction.

The feature schema says names, dtypes and ranks; these rules say what the model can actually use:
ids inside its vocabularies, widths its layers take, and lengths that follow from the reference's
duration. The library still knows tensors, not models: the server reads the facts from the checkpoint
(engine `FeatureLimits`) and hands them over as one `TensorRule` per tensor name.

Length tolerance. A clip of d seconds gives `per_second * d` frames up to the framing: measured on
2-30 s clips at 16-48 kHz under both reference processings, speech tokens come out as ceil(25 d) and
mel frames as floor(50 d), never more than one frame off. `LENGTH_SLACK_FRAMES` allows one more frame
(a resampler rounding the length by a sample), and `LENGTH_SLACK_SHARE` 2% for a framing that pads
differently (30 s segments each rounding up). Features of another clip have another length unless the
two clips are within that of each other; those are caught by the comparison with a re-extraction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

LENGTH_SLACK_FRAMES = 2
LENGTH_SLACK_SHARE = 0.02


@dataclass(frozen=True)
class TensorRule:
    """What one feature tensor must satisfy beyond its dtype and rank.

    `values`: every element in [low, high) (ids into a vocabulary). `trailing`: the sizes of the last
    dimensions (a mel's width, an embedding's length). `per_second`: dimension 0 has about this many
    entries per second of reference audio. `max_abs_diff` / `min_agreement`: how close the tensor must
    be to one re-extracted from its own reference (floats: largest difference; ids: share equal, same
    length); a tensor with neither is not compared (it does not follow from the audio).
    """

    values: tuple[int, int] | None = None
    trailing: tuple[int, ...] = ()
    per_second: float | None = None
    max_abs_diff: float | None = None
    min_agreement: float | None = None


def expected_length(per_second: float, duration_s: float) -> tuple[int, int]:
    """The lengths (inclusive) a clip of `duration_s` may give at `per_second` (see the module docstring)."""
    centre = per_second * duration_s
    slack = LENGTH_SLACK_FRAMES + LENGTH_SLACK_SHARE * centre
    return max(1, math.floor(centre - slack)), math.ceil(centre + slack)


@dataclass(frozen=True)
class FeatureRules:
    """The rules of every tensor that has any (tensors without one pass)."""

    tensors: Mapping[str, TensorRule]

    def shape_problem(self, shapes: Mapping[str, tuple[int, ...]], duration_s: float) -> str | None:
        """Why these shapes cannot come from a `duration_s` clip for this model, or None (no data needed)."""
        for name, rule in self.tensors.items():
            shape = shapes.get(name)
            if shape is None:
                continue
            if rule.trailing and tuple(shape[-len(rule.trailing) :]) != rule.trailing:
                return (
                    f"{name} has shape {list(shape)}; this model needs its last dimensions to be {list(rule.trailing)}"
                )
            if rule.per_second is not None and shape:
                low, high = expected_length(rule.per_second, duration_s)
                if not low <= shape[0] <= high:
                    return (
                        f"{name} has {shape[0]} frames, but a {duration_s:.2f} s reference gives {low}-{high} "
                        f"({rule.per_second:g} per second)"
                    )
        return None

    @property
    def ranged(self) -> list[str]:
        """Names of the tensors whose values are checked (ids): the ones `value_problem` needs."""
        return [name for name, rule in self.tensors.items() if rule.values is not None]

    def value_problem(self, arrays: Mapping[str, np.ndarray | torch.Tensor]) -> str | None:
        """Why these values do not fit the model's vocabularies, or None."""
        for name in self.ranged:
            if name not in arrays:
                continue
            values = np.asarray(arrays[name])
            low, high = self.tensors[name].values or (0, 0)
            if values.size and (int(values.min()) < low or int(values.max()) >= high):
                return (
                    f"{name} holds ids from {int(values.min())} to {int(values.max())}; this model's vocabulary "
                    f"takes {low} to {high - 1}"
                )
        return None

    def problem_with(self, tensors: Mapping[str, torch.Tensor], duration_s: float) -> str | None:
        """Shapes and values of whole tensors (what an import or a load has in hand)."""
        shapes = {name: tuple(t.shape) for name, t in tensors.items()}
        return self.shape_problem(shapes, duration_s) or self.value_problem(tensors)

    def mismatch(self, stored: Mapping[str, torch.Tensor], extracted: Mapping[str, torch.Tensor]) -> str | None:
        """How `stored` differs from features re-extracted from their own reference beyond the extraction
        tolerance, or None. Only tensors with a tolerance are compared."""
        for name, rule in self.tensors.items():
            if name not in stored or name not in extracted:
                continue
            ours, theirs = extracted[name].detach().cpu(), stored[name].detach().cpu()
            if rule.min_agreement is not None:
                if ours.shape != theirs.shape:
                    return f"{name} has {theirs.numel()} entries; its reference gives {ours.numel()}"
                agreement = float((ours == theirs).double().mean()) if ours.numel() else 1.0
                if agreement < rule.min_agreement:
                    return (
                        f"only {agreement:.0%} of {name} match those of its reference "
                        f"(at least {rule.min_agreement:.0%} must)"
                    )
            if rule.max_abs_diff is not None:
                if ours.shape != theirs.shape:
                    return f"{name} has shape {list(theirs.shape)}; its reference gives {list(ours.shape)}"
                error = float((ours.double() - theirs.double()).abs().max()) if ours.numel() else 0.0
                if not error <= rule.max_abs_diff:
                    return (
                        f"{name} differs from its reference's by up to {error:.3g} (the limit is {rule.max_abs_diff:g})"
                    )
        return None
