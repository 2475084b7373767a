"""The fast LLM path: a static KV cache (optionally compiled) decodes the same tokens as the dynamic one."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch._dynamo.utils import counters

from glmtts_mcp.engine.checkpoint.loader import Models, load_models
from glmtts_mcp.engine.models.llm import GLMTTSLLM, RasSettings, StepTrace
from glmtts_mcp.engine.parity import load_case_tensors
from glmtts_mcp.engine.parity.llm_cases import RecordedDraws, load_case_llm
from glmtts_mcp.engine.models.static_cache import CAPACITY_STEP, DynamicDecoder, StaticDecoder

FP32_ROUNDING = 1e-5  # the static cache's masked attention reduces over more (zero) terms


@pytest.fixture(scope="module")
def models(tiny_checkpoint: Path, one_torch_thread: None) -> Models:
    return load_models(tiny_checkpoint, torch.device("cpu"))


def with_decoder(llm: GLMTTSLLM, decoder: DynamicDecoder | StaticDecoder) -> GLMTTSLLM:
    return GLMTTSLLM(llm.model, llm.special, decoder)


def traced(llm: GLMTTSLLM, *args: list[int], **kwargs: object) -> tuple[list[int], list[StepTrace]]:
    trace: list[StepTrace] = []
    return llm.generate(*args, trace=trace, **kwargs), trace  # type: ignore[arg-type]


def assert_same_decoding(a: tuple[list[int], list[StepTrace]], b: tuple[list[int], list[StepTrace]]) -> float:
    """Identical tokens and picks; step log-probs equal up to fp32 rounding. Returns the largest gap."""
    assert a[0] == b[0]
    assert [(t.nucleus_pick, t.fallback_pick, t.sampled) for t in a[1]] == \
        [(t.nucleus_pick, t.fallback_pick, t.sampled) for t in b[1]]
    gap = 0.0
    for x, y in zip(a[1], b[1], strict=True):
        assert torch.equal(torch.isinf(x.logp), torch.isinf(y.logp))
        finite = ~torch.isinf(x.logp)
        gap = max(gap, float((x.logp[finite] - y.logp[finite]).abs().max()))
    assert gap <= FP32_ROUNDING
    return gap


@pytest.mark.parametrize("name", ["llm", "llm_real"])
@pytest.mark.slow
def test_static_cache_decodes_the_golden_cases_like_the_dynamic_one(
        name: str, golden_case: Callable[..., tuple[Path, dict]]) -> None:
    folder, case = golden_case(name)
    _, io = load_case_tensors(folder)
    llm = load_case_llm(folder, case)
    ras, args = case["config"]["ras_args"], case["config"]["inference_args"]
    settings = RasSettings(top_p=ras["top_p"], top_k=ras["top_k"], win_size=ras["win_size"], tau_r=ras["tau_r"],
                           temperature=ras["temperature"])
    prompt = (io["text_token"][0].tolist(), io["prompt_text_token"][0].tolist(), io["prompt_speech_token"][0].tolist())
    lengths = {"min_ratio": args["min_token_text_ratio"], "max_ratio": args["max_token_text_ratio"]}
    expected = io["speech_token_out"][0].tolist()

    def recorded(decoder: DynamicDecoder | StaticDecoder) -> tuple[list[int], list[StepTrace]]:
        draws = RecordedDraws(io["step_nucleus_pick"].tolist(), io["step_fallback_pick"].tolist())
        return traced(with_decoder(llm, decoder), *prompt, sampling=settings, draws=draws, **lengths)

    static = recorded(StaticDecoder(llm.model))
    assert static[0] == expected
    assert_same_decoding(static, recorded(DynamicDecoder(llm.model)))
    seeded = [traced(with_decoder(llm, d), *prompt, sampling=settings, generator=torch.Generator().manual_seed(0),
                     **lengths) for d in (StaticDecoder(llm.model), DynamicDecoder(llm.model))]
    assert_same_decoding(*seeded)


def test_static_cache_decodes_the_tiny_checkpoint_like_the_dynamic_one(models: Models) -> None:
    text = models.text_tokenizer.encode("A short sentence to speak, with a comma.")
    prompt_text = models.text_tokenizer.encode("The voice says this. ")
    prompt_speech = list(range(0, 90, 3))
    for seed in (0, 1, 2):
        runs = [traced(with_decoder(models.llm, d), text, prompt_text, prompt_speech, max_ratio=6.0,
                       generator=torch.Generator().manual_seed(seed))
                for d in (StaticDecoder(models.llm.model), DynamicDecoder(models.llm.model))]
        assert len(runs[0][0]) > 0
        assert_same_decoding(*runs)


@pytest.mark.slow
def test_compiled_step_traces_as_one_graph_and_decodes_the_same(models: Models) -> None:
    """fullgraph=True fails on any graph break (which would rule out CUDA graphs); the eager
    backend checks the trace without a C++ compiler."""
    text, prompt_text, prompt_speech = [5, 6, 7, 8], [9, 10, 11], [1, 2, 3, 4]
    compiled = StaticDecoder(models.llm.model, compile=True, backend="eager")
    counters.clear()
    runs = [traced(with_decoder(models.llm, d), text, prompt_text, prompt_speech, max_ratio=8.0,
                   generator=torch.Generator().manual_seed(4))
            for d in (compiled, DynamicDecoder(models.llm.model), compiled)]
    assert_same_decoding(runs[0], runs[1])
    assert_same_decoding(runs[2], runs[1])
    # one graph for every step of both generations: positions and the input row are not baked in
    assert counters["stats"]["unique_graphs"] <= 1 and not counters["recompiles"]


def test_caches_are_reused_grown_and_never_shared(models: Models) -> None:
    decoder = StaticDecoder(models.llm.model)
    with decoder.cache(10) as first:
        pass
    with decoder.cache(CAPACITY_STEP) as again:
        assert again is first  # reused: a compiled graph keeps its tensor addresses
        with decoder.cache(10) as other:
            assert other is not first  # in use: a second generation gets its own
    with decoder.cache(CAPACITY_STEP + 1) as bigger:
        assert bigger is not first and bigger is not other

    llm = with_decoder(models.llm, decoder)
    args = ([5, 6, 7, 8, 9], [10, 11], [1, 2, 3])
    alone = llm.generate(*args, max_ratio=10.0, generator=torch.Generator().manual_seed(9))
    results: list[list[int]] = []
    threads = [threading.Thread(target=lambda: results.append(
        llm.generate(*args, max_ratio=10.0, generator=torch.Generator().manual_seed(9)))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [alone] * 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_step_decodes_the_same_with_one_sync_per_step(tiny_checkpoint: Path) -> None:
    """On a GPU: the compiled (CUDA graph) static path decodes like the eager dynamic one, and the
    sampling loop synchronises with the host once per step (plus the prefill and fallback redraws)."""
    models = load_models(tiny_checkpoint, torch.device("cuda"))  # the CPU models' linears are oneDNN-packed
    model = models.llm.model
    text, prompt_text, prompt_speech = list(range(5, 15)), [9, 10, 11], [1, 2, 3, 4]
    kwargs = {"min_ratio": 2.0, "max_ratio": 6.0}
    compiled = with_decoder(models.llm, StaticDecoder(model, compile=True))
    reference = traced(with_decoder(models.llm, DynamicDecoder(model)), text, prompt_text, prompt_speech,
                       generator=torch.Generator().manual_seed(6), **kwargs)

    def run() -> list[int]:
        return compiled.generate(text, prompt_text, prompt_speech, generator=torch.Generator().manual_seed(6),
                                 **kwargs)

    run()  # compiles and records the graph
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with pytest.warns(UserWarning) as syncs:
            tokens = run()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert tokens == reference[0]
    steps, fallbacks = len(reference[1]), sum(t.fallback_pick >= 0 for t in reference[1])
    assert len([w for w in syncs if "synchroniz" in str(w.message)]) <= steps + fallbacks + 2
