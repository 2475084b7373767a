"""The GLM-TTS LLM: golden parity, checkpoint loading, stopping and length rules, RAS, KV cache.

Every decoding here runs through the serving scheduler (a batch of one, `decode_alone`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

from glmtts_mcp.engine.frontend.text_tokenizer import SpecialTokenIds
from glmtts_mcp.engine.models.llm import (
    GLMTTSLLM,
    Draws,
    LLMLoadError,
    RasSettings,
    StepTrace,
    load_llm,
    nucleus_size,
)
from glmtts_mcp.engine.parity import load_case_tensors
from glmtts_mcp.engine.parity.llm_cases import (
    DrawMismatchError,
    RecordedDraws,
    decode_alone,
    load_case_llm,
    run_llm_case,
)
from glmtts_mcp.engine.runtime.scheduler import SpeechRequest

# A tiny vocabulary laid out like the real one (gaps between specials, padding rows at the end).
SPECIAL = SpecialTokenIds(pad=40, eoa=47, boa=54, ats=67, ate=130)
EOS_TEXT_ID = 2  # config eos_token_id: an ordinary text id, as in the real config


@pytest.mark.parametrize("name", ["llm", "llm_real"])
def test_golden_case_passes(name: str, golden_case: Callable[..., tuple[Path, dict]]) -> None:
    folder, case = golden_case(name)
    result = run_llm_case(folder, case)
    assert result.passed, result.detail
    assert result.max_abs <= case["tolerance"]["atol"]


def test_seeded_generator_reproduces_upstream_tokens(golden_case: Callable[..., tuple[Path, dict]]) -> None:
    """Without recorded draws, a CPU generator seeded like upstream's set_seed(0) draws the same tokens.

    This holds for the torch version the golden was made with (same multinomial); the recorded-draw
    parity above is the version-independent check.
    """
    folder, case = golden_case("llm_real")
    llm = load_case_llm(folder, case)
    _, io = load_case_tensors(folder)
    tokens = decode_alone(
        llm,
        SpeechRequest(
            io["text_token"][0].tolist(),
            io["prompt_text_token"][0].tolist(),
            io["prompt_speech_token"][0].tolist(),
            RasSettings(),
            torch.Generator().manual_seed(0),
        ),
    )
    assert tokens == io["speech_token_out"][0].tolist()
    assert min(tokens) < 0  # upstream returns non-audio ids as they are
    assert len(llm.in_audio_range(tokens)) == len(tokens) - case["measured"]["n_out_tokens_outside_audio_range"]


def tiny_config(tie: bool = True) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=150,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=512,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=tie,
        bos_token_id=1,
        eos_token_id=EOS_TEXT_ID,
        initializer_range=0.02,
    )


def tiny_model(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(tiny_config()).eval()


def write_sharded(model: LlamaForCausalLM, folder: Path) -> None:
    """Two shards + index without lm_head, with one layer split across the shards (as the real files)."""
    folder.mkdir()
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    keys = list(state)
    cut = keys.index("model.layers.1.mlp.down_proj.weight")
    shards = {"model-00001-of-00002.safetensors": keys[:cut], "model-00002-of-00002.safetensors": keys[cut:]}
    for name, names in shards.items():
        save_file({k: state[k] for k in names}, str(folder / name), metadata={"format": "pt"})
    total = sum(v.numel() * v.element_size() for v in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": {k: n for n, ks in shards.items() for k in ks}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    config = model.config.to_dict() | {"architectures": ["LlamaForCausalLM"], "torch_dtype": "float32"}
    (folder / "config.json").write_text(json.dumps(config))


def test_sharded_tied_checkpoint_loads_exactly(tmp_path: Path) -> None:
    model = tiny_model()
    write_sharded(model, tmp_path / "llm")
    loaded = load_llm(tmp_path / "llm", device="cpu", dtype=torch.float32)
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()
    ids = torch.randint(0, 150, (1, 17))
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
    assert load_llm(tmp_path / "llm", dtype=torch.bfloat16).model.embed_tokens.weight.dtype == torch.bfloat16


def test_missing_weight_is_an_error(tmp_path: Path) -> None:
    write_sharded(tiny_model(), tmp_path / "llm")
    shard = tmp_path / "llm" / "model-00002-of-00002.safetensors"
    from safetensors.torch import load_file

    state = load_file(str(shard))
    del state["model.norm.weight"]
    save_file(state, str(shard), metadata={"format": "pt"})
    with pytest.raises(LLMLoadError, match=r"model.norm.weight"):
        load_llm(tmp_path / "llm")


def test_untied_config_without_head_is_an_error(tmp_path: Path) -> None:
    write_sharded(tiny_model(), tmp_path / "llm")
    config = json.loads((tmp_path / "llm" / "config.json").read_text()) | {"tie_word_embeddings": False}
    (tmp_path / "llm" / "config.json").write_text(json.dumps(config))
    with pytest.raises(LLMLoadError, match=r"lm_head.weight"):
        load_llm(tmp_path / "llm")


def test_missing_folder_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "llm").mkdir()
    with pytest.raises(LLMLoadError, match=r"config.json is missing"):
        load_llm(tmp_path / "llm")


def favour(model: LlamaForCausalLM, token_id: int) -> None:
    """Make `token_id` win every step: a shared embedding direction that token's (tied) row doubles."""
    with torch.no_grad():
        embed = model.model.embed_tokens.weight
        embed[:, 0] = 10.0
        embed[token_id, 0] = 20.0


TEXT = [5, 6, 7, 8, 9]
PROMPT_TEXT = [11, 12, 13]
PROMPT_SPEECH = [0, 3, 60, 7]


def decode(
    llm: GLMTTSLLM,
    *,
    seed: int = 0,
    draws: Draws | None = None,
    trace: list[StepTrace] | None = None,
    min_ratio: float = 2.0,
    max_ratio: float = 20.0,
) -> list[int]:
    """TEXT in the prompt's voice, through the serving scheduler as a batch of one."""
    return decode_alone(
        llm,
        SpeechRequest(
            TEXT,
            PROMPT_TEXT,
            PROMPT_SPEECH,
            RasSettings(),
            torch.Generator().manual_seed(seed),
            min_ratio=min_ratio,
            max_ratio=max_ratio,
            trace=trace,
            draws=draws,
        ),
    )


def test_stops_on_eoa_only_after_min_len() -> None:
    model = tiny_model()
    favour(model, SPECIAL.eoa)
    trace: list[StepTrace] = []
    tokens = decode(GLMTTSLLM(model, SPECIAL), seed=1, trace=trace, min_ratio=2.0)
    assert len(tokens) == int(2.0 * len(TEXT))  # eoa masked before min_len, drawn right at it
    assert all(torch.isinf(t.logp[SPECIAL.eoa]) for t in trace[:-1])
    assert trace[-1].sampled == SPECIAL.eoa and SPECIAL.eoa - SPECIAL.ats not in tokens


@pytest.mark.slow
def test_config_eos_does_not_stop_and_max_len_holds() -> None:
    model = tiny_model()
    favour(model, EOS_TEXT_ID)
    llm = GLMTTSLLM(model, SPECIAL)
    tokens = decode(llm, seed=1, max_ratio=3.5)
    assert len(tokens) == int(3.5 * len(TEXT))
    assert tokens.count(EOS_TEXT_ID - SPECIAL.ats) >= len(tokens) - 1  # returned as upstream does: negative
    assert llm.in_audio_range([*tokens, 0, SPECIAL.ate - SPECIAL.ats, SPECIAL.ate - SPECIAL.ats + 1]) == [
        0,
        SPECIAL.ate - SPECIAL.ats,
    ]


@pytest.mark.slow
def test_seeded_generation_is_deterministic() -> None:
    llm = GLMTTSLLM(tiny_model(), SPECIAL)

    def run(seed: int) -> list[int]:
        return decode(llm, seed=seed, max_ratio=6.0)

    first = run(3)
    assert len(first) == 30 and first == run(3)
    assert first != run(4)


@pytest.mark.slow
def test_kv_cached_steps_equal_uncached_recomputation() -> None:
    """The slot forward (the scheduler's own Llama math over its KV cache) against transformers' uncached one."""
    llm = GLMTTSLLM(tiny_model(), SPECIAL)
    trace: list[StepTrace] = []
    tokens = decode(llm, seed=5, max_ratio=2.0, trace=trace)
    full = llm.teacher_forced_logits(TEXT, PROMPT_TEXT, PROMPT_SPEECH, tokens).log_softmax(dim=-1)
    assert full.shape == (len(tokens) + 1, 150) and len(trace) == len(tokens)
    for step, record in enumerate(trace):
        finite = ~torch.isinf(record.logp)
        assert torch.allclose(record.logp[finite], full[step][finite], atol=1e-5, rtol=0)


@pytest.mark.slow
def test_recorded_draws_replay_and_catch_divergence() -> None:
    llm = GLMTTSLLM(tiny_model(), SPECIAL)
    trace: list[StepTrace] = []
    tokens = decode(llm, seed=7, max_ratio=4.0, trace=trace)
    nucleus = [t.nucleus_pick for t in trace]
    fallback = [t.fallback_pick for t in trace]
    replay = RecordedDraws(nucleus, fallback)
    assert decode(llm, seed=99, draws=replay, max_ratio=4.0) == tokens  # the draws, not the generator, decide
    assert replay.fallback_steps == [i for i, f in enumerate(fallback) if f >= 0]
    with pytest.raises(DrawMismatchError):
        decode(llm, draws=RecordedDraws([-5] * len(nucleus), fallback), max_ratio=4.0)


def test_prompt_layout_and_speech_without_transcript() -> None:
    llm = GLMTTSLLM(tiny_model(), SPECIAL)
    assert llm.prompt_ids(TEXT, PROMPT_TEXT, PROMPT_SPEECH) == PROMPT_TEXT + TEXT + [SPECIAL.boa] + [
        SPECIAL.ats + t for t in PROMPT_SPEECH
    ]
    assert llm.prompt_ids(TEXT, [], []) == [*TEXT, SPECIAL.boa]
    with pytest.raises(ValueError, match="transcript"):
        llm.prompt_ids(TEXT, [], PROMPT_SPEECH)


def test_special_ids_outside_vocab_are_refused() -> None:
    with pytest.raises(LLMLoadError, match="different checkpoints"):
        GLMTTSLLM(tiny_model(), SpecialTokenIds(pad=40, eoa=47, boa=54, ats=67, ate=94265))


def upstream_nucleus_size(probs: torch.Tensor, top_p: float, top_k: int) -> int:
    """Upstream's loop (cosyvoice nucleus_sampling), kept here as the oracle."""
    kept, cum = 0, 0.0
    for p in probs:
        if cum < top_p and kept < top_k:
            cum += p
            kept += 1
        else:
            break
    return kept


def test_nucleus_size_follows_upstream_float32_accumulation() -> None:
    gen = torch.Generator().manual_seed(0)
    for trial in range(300):
        logits = torch.randn(60, generator=gen) * (0.5 + trial / 50)
        probs = logits.softmax(0).sort(descending=True, stable=True).values
        for top_p, top_k in ((0.8, 25), (0.7, 5), (0.95, 60)):
            assert nucleus_size(probs, top_p, top_k) == upstream_nucleus_size(probs, top_p, top_k)
    exact = torch.tensor([0.5, 0.2, 0.1, 0.1, 0.1])  # fp32(0.5+0.2) == fp32(0.7): not below 0.7, stop at 2
    assert nucleus_size(exact, 0.7, 25) == upstream_nucleus_size(exact, 0.7, 25) == 2
    assert RasSettings() == RasSettings(top_p=0.8, top_k=25, win_size=10, tau_r=0.1, temperature=1.0)
    for bad in ({"top_p": 0.0}, {"top_k": 0}, {"win_size": 0}, {"temperature": 0.0}):
        with pytest.raises(ValueError, match="invalid sampling settings"):
            RasSettings(**bad)
