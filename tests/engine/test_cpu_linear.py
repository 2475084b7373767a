"""The LLM's CPU linears through oneDNN packed weights: the same logits (within rounding) and the same
tokens as the dense model, one copy of the weights, and the dense path kept when oneDNN cannot run."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from glmtts_mcp.engine.checkpoint.loader import load_models
from glmtts_mcp.engine.models import cpu_linear
from glmtts_mcp.engine.models.cpu_linear import PackedLinear, TiedOutputLinear, prepack_llm_linears
from glmtts_mcp.engine.models.llm import GLMTTSLLM, RasSettings, load_llm
from glmtts_mcp.engine.parity import load_case_tensors
from glmtts_mcp.engine.parity.llm_cases import RecordedDraws, decode_alone, load_case_llm, run_llm_case
from glmtts_mcp.engine.runtime.pipeline import Engine
from glmtts_mcp.engine.runtime.scheduler import BatchScheduler, SpeechRequest

LOGIT_TOLERANCE = 1e-4


def test_packed_llm_gives_the_dense_logits_and_tokens(golden_case: Callable[..., tuple[Path, dict]]) -> None:
    """On the real-flag golden case: teacher-forced logits within 1e-4, the same tokens from the same draws."""
    folder, case = golden_case("llm_real")
    _, io = load_case_tensors(folder)
    dense, packed = load_case_llm(folder, case), load_case_llm(folder, case)
    assert prepack_llm_linears(packed.model)
    text, prompt_text = io["text_token"][0].tolist(), io["prompt_text_token"][0].tolist()
    prompt_speech, out = io["prompt_speech_token"][0].tolist(), io["speech_token_out"][0].tolist()
    want = dense.teacher_forced_logits(text, prompt_text, prompt_speech, out)
    got = packed.teacher_forced_logits(text, prompt_text, prompt_speech, out)
    assert float((got - want).abs().max()) <= LOGIT_TOLERANCE
    assert torch.equal(got.argmax(-1), want.argmax(-1))
    picks = io["step_nucleus_pick"].tolist(), io["step_fallback_pick"].tolist()
    assert (
        decode_alone(
            packed,
            SpeechRequest(
                text, prompt_text, prompt_speech, RasSettings(), torch.Generator(), draws=RecordedDraws(*picks)
            ),
        )
        == out
    )


def test_packing_keeps_one_copy_of_the_weights(golden_case: Callable[..., tuple[Path, dict]]) -> None:
    folder, case = golden_case("llm_real")
    model = load_case_llm(folder, case).model
    prepack_llm_linears(model)
    layer = model.model.layers[0]
    assert all(isinstance(m, PackedLinear) for m in (layer.self_attn.q_proj, layer.mlp.down_proj))
    dense_matrices = [name for name, p in model.named_parameters() if p.dim() == 2]
    assert dense_matrices == ["model.embed_tokens.weight"]  # the projections live only in their packed form
    assert isinstance(model.lm_head, TiedOutputLinear)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_the_engine_loads_a_packed_llm_on_cpu_and_batches_it_like_the_dense_one(tiny_checkpoint: Path) -> None:
    """The product path: load_models packs; the scheduler's batched tokens equal the dense model's alone."""
    models = load_models(tiny_checkpoint, torch.device("cpu"))
    assert isinstance(models.llm.model.model.layers[0].mlp.up_proj, PackedLinear)
    reference = GLMTTSLLM(load_llm(tiny_checkpoint / "llm"), models.llm.special)  # dense: what load_llm gives
    made = [
        SpeechRequest(
            list(range(5 + i, 15 + 2 * i)),
            [30 + i, 31],
            [(3 * i + j) % 40 for j in range(8 + i)],
            RasSettings(),
            torch.Generator().manual_seed(i),
            min_ratio=2.0,
            max_ratio=4.0,
        )
        for i in range(3)
    ]
    expected = [
        decode_alone(
            reference,
            SpeechRequest(
                r.text_ids,
                r.prompt_text_ids,
                r.prompt_speech_ids,
                r.sampling,
                torch.Generator().manual_seed(i),
                min_ratio=r.min_ratio,
                max_ratio=r.max_ratio,
            ),
        )
        for i, r in enumerate(made)
    ]
    scheduler = BatchScheduler(models.llm, max_batch=3, slot_positions=256)
    try:
        futures = [scheduler.submit(r) for r in made]
        assert [f.result(timeout=120) for f in futures] == expected
        assert max(scheduler.stats().batch_sizes) == 3
    finally:
        scheduler.close()


def test_the_dense_path_stays_when_onednn_cannot_run(
    golden_case: Callable[..., tuple[Path, dict]], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A CPU without oneDNN support for the dtype (bf16 needs AVX-512): one log line, the model untouched."""

    def unsupported(self: PackedLinear, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("mkldnn_linear: bf16 path needs the cpu support avx512bw (forced by the test)")

    monkeypatch.setattr(PackedLinear, "forward", unsupported)
    folder, case = golden_case("llm_real")
    llm = load_case_llm(folder, case)
    with caplog.at_level(logging.INFO, logger=cpu_linear.__name__):
        assert not prepack_llm_linears(llm.model)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "stay on torch's default CPU matmul" in lines[0] and "forced by the test" in lines[0]
    assert isinstance(llm.model.model.layers[0].self_attn.q_proj, torch.nn.Linear)
    assert isinstance(llm.model.lm_head, torch.nn.Linear)
    assert run_llm_case(folder, case).passed


@pytest.mark.parametrize(("max_batch", "packed"), [(2, True), (1, False)])
def test_the_cpu_default_is_fp32_through_onednn_when_batching(
    tiny_checkpoint: Path, max_batch: int, packed: bool
) -> None:
    """The CPU dtype decision (benchmarks/README.md, LLM dtype on CPU): auto is fp32, which batches through
    oneDNN; one sequence at a time (--max-batch 1) keeps the dense weights, faster for a single row."""
    engine = Engine.load(tiny_checkpoint, device="cpu", whisper_model="tiny-random", max_batch=max_batch)
    try:
        assert engine.dtype == "float32"
        assert isinstance(engine.models.llm.model.model.layers[0].self_attn.o_proj, PackedLinear) == packed
    finally:
        engine.unload()


def test_packing_lets_the_checkpoint_files_mapping_close(tiny_checkpoint: Path) -> None:
    """The dense weights are views of the mapped safetensors files: once packed, nothing may keep the
    mapping open (its pages would stay in the RSS beside the packed copy)."""
    import gc

    def mapped() -> bool:
        return str((tiny_checkpoint / "llm").resolve()) in Path("/proc/self/maps").read_text()

    model = load_llm(tiny_checkpoint / "llm")
    if not mapped():
        pytest.skip("this transformers version copies the weights instead of mapping the files")
    assert prepack_llm_linears(model)
    gc.collect()
    assert not mapped()
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
