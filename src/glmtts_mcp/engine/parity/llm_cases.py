"""Parity runners for the LLM (`llm`) and the text tokenizer (`text_tokenizer`) golden cases."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from glmtts_mcp.engine.frontend.text_tokenizer import SpecialTokenIds, TextTokenizer, TokenizerError
from glmtts_mcp.engine.models.llm import GLMTTSLLM, RasSettings, StepTrace, load_llm
from glmtts_mcp.engine.parity import CaseResult, compare, load_case_tensors
from glmtts_mcp.engine.runtime.scheduler import BatchScheduler, SpeechRequest


class DrawMismatchError(RuntimeError):
    """Recorded draws that cannot have come from this step's distribution (parity diverged)."""


@dataclass
class RecordedDraws:
    """Replay the per-step picks that upstream's RNG made, so a parity run is exact without its RNG.

    `nucleus[i]` is the id upstream's nucleus draw returned at step i; `fallback[i]` is the id of
    its full-softmax redraw, or -1 where it did not redraw. Every pick is checked against this
    step's distribution, so a divergence raises instead of passing silently.
    """

    nucleus_picks: Sequence[int]
    fallback_picks: Sequence[int]
    fallback_steps: list[int] = field(default_factory=list)

    def _recorded(self, picks: Sequence[int], step: int, what: str) -> int:
        if step >= len(picks):
            raise DrawMismatchError(f"step {step} needs a {what} draw but only {len(picks)} were recorded")
        return int(picks[step])

    def nucleus(self, step: int, probs: torch.Tensor, ids: torch.Tensor) -> int:
        pick = self._recorded(self.nucleus_picks, step, "nucleus")
        if pick not in ids.tolist():
            raise DrawMismatchError(
                f"step {step}: recorded nucleus pick {pick} is not in this step's nucleus {ids.tolist()}"
            )
        return pick

    def full(self, step: int, probs: torch.Tensor) -> int:
        pick = self._recorded(self.fallback_picks, step, "fallback")
        if pick < 0 or not bool(probs[pick] > 0):
            raise DrawMismatchError(f"step {step}: redraw needed here but the recorded fallback pick is {pick}")
        self.fallback_steps.append(step)
        return pick


def load_case_llm(folder: Path, case: dict, dtype: torch.dtype = torch.float32) -> GLMTTSLLM:
    """The case's model through the product loader: its config as config.json beside its weights."""
    config = case["config"]
    with tempfile.TemporaryDirectory(prefix="glmtts-llm-case-") as tmp:
        (Path(tmp) / "config.json").write_text(json.dumps(config["llama_config_json"]), encoding="utf-8")
        os.symlink((folder / "weights.safetensors").resolve(), Path(tmp) / "model.safetensors")
        model = load_llm(Path(tmp), device="cpu", dtype=dtype, attn_implementation=config.get("attn_implementation"))
    return GLMTTSLLM(model, SpecialTokenIds(**config["special_token_ids"]))


def decode_alone(llm: GLMTTSLLM, request: SpeechRequest) -> list[int]:
    """The request's speech tokens from the serving scheduler as a batch of one, its slot sized to fit.

    Parity and the tests decode through the very code that serves, so what they check is what runs.
    """
    sequence = llm.sequence(
        request.text_ids,
        request.prompt_text_ids,
        request.prompt_speech_ids,
        min_ratio=request.min_ratio,
        max_ratio=request.max_ratio,
    )
    scheduler = BatchScheduler(llm, max_batch=1, slot_positions=len(sequence.prompt) + max(1, sequence.max_len))
    try:
        return scheduler.submit(request).result()
    finally:
        scheduler.close()


def _logp_error(actual: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float) -> tuple[float, bool]:
    """Compare step log-probs: the -inf entries (masked eoa) must coincide, the rest within tolerance."""
    if actual.shape != expected.shape:
        return float("inf"), False
    inf_a, inf_e = torch.isinf(actual), torch.isinf(expected)
    if not torch.equal(inf_a, inf_e):
        return float("inf"), False
    max_abs, _, ok = compare(actual[~inf_a], expected[~inf_e], atol, rtol)
    return max_abs, ok


def run_llm_case(folder: Path, case: dict) -> CaseResult:
    """Teacher-forced logits within the tolerance; tokens exact when fed upstream's recorded draws."""
    _, io = load_case_tensors(folder)
    llm = load_case_llm(folder, case)
    config, tol = case["config"], case["tolerance"]
    ras = config["ras_args"]
    args = config["inference_args"]
    settings = RasSettings(
        top_p=ras["top_p"],
        top_k=ras["top_k"],
        win_size=ras["win_size"],
        tau_r=ras["tau_r"],
        temperature=ras["temperature"],
    )
    text = io["text_token"][0].tolist()
    prompt_text = io["prompt_text_token"][0].tolist()
    prompt_speech = io["prompt_speech_token"][0].tolist()

    # Upstream's RNG is not replayed: its per-step picks are fed in (and checked against our nucleus).
    draws = RecordedDraws(io["step_nucleus_pick"].tolist(), io["step_fallback_pick"].tolist())
    trace: list[StepTrace] = []
    tokens = decode_alone(
        llm,
        SpeechRequest(
            text,
            prompt_text,
            prompt_speech,
            settings,
            torch.Generator(),
            min_ratio=args["min_token_text_ratio"],
            max_ratio=args["max_token_text_ratio"],
            trace=trace,
            draws=draws,
        ),
    )
    logits = llm.teacher_forced_logits(text, prompt_text, prompt_speech, io["speech_token_out"][0].tolist())

    atol, rtol = tol["atol"], tol["rtol"]
    max_abs, max_rel, logits_ok = compare(logits, io["teacher_forced_logits"], atol, rtol)
    logp_abs, logp_ok = _logp_error(torch.stack([t.logp for t in trace]), io["step_logp"], atol, rtol)
    checks = {
        "prefix": llm.prompt_ids(text, prompt_text, prompt_speech) == io["input_ids_prefix"][0].tolist(),
        "tokens": tokens == io["speech_token_out"][0].tolist(),
        "sampled": [t.sampled for t in trace] == io["step_sampled_id"].tolist(),
        "fallback_steps": draws.fallback_steps
        == [i for i, f in enumerate(io["step_fallback_pick"].tolist()) if f >= 0],
        "logits": logits_ok,
        "step_logp": logp_ok,
    }
    failed = [name for name, ok in checks.items() if not ok]
    detail = f"{len(tokens)} tokens, {len(draws.fallback_steps)} fallbacks, step logp max abs {logp_abs:.3g}" + (
        f"; FAILED: {', '.join(failed)}" if failed else ""
    )
    return CaseResult(
        case["kind"], folder.name, max_abs, max_rel, f"atol {atol} rtol {rtol}; tokens exact", not failed, detail
    )


def run_text_tokenizer_case(folder: Path, case: dict) -> CaseResult:
    """Exact ids for every string, and the same special-id result (or the same refusal) as upstream."""
    expected = json.loads((folder / "cases.json").read_text(encoding="utf-8"))
    tokenizer = TextTokenizer.from_dir(folder / expected["tokenizer_dir"])
    wrong = [c["input"] for c in expected["cases"] if tokenizer.encode(c["input"]) != c["ids"]]
    wrong += [s for s, ids in expected["special_string_lookups"].items() if tokenizer.encode(s) != ids]
    want = expected["get_special_token_ids"]
    try:
        got = vars(tokenizer.special_token_ids())
        special_ok = bool(want["ok"]) and got == want["result"]
        special_detail = f"special ids {got}"
    except TokenizerError as exc:
        special_ok = not want["ok"]
        special_detail = f"special ids refused: {exc}"
    passed = not wrong and special_ok
    detail = f"{len(expected['cases'])} strings, {len(wrong)} wrong; {special_detail}"
    if wrong:
        detail += f"; first wrong: {wrong[0]!r}"
    return CaseResult(case["kind"], folder.name, float(len(wrong)), 0.0, "exact ids", passed, detail)


RUNNERS = {"llm": run_llm_case, "text_tokenizer": run_text_tokenizer_case}
