"""Write the chunked-streaming golden cases by running upstream's own `Token2Wav.token2wav_stream`.

Upstream (zai-org/GLM-TTS, an extracted checkout) runs on the tiny checkpoint that
`make_tiny_checkpoint(size="tiny", seed=0)` writes (the real checkpoint's flags, random weights; it rebuilds
byte for byte, so the weights are not stored), through `upstream_glmtts.build_flow` / `build_hift`.
Upstream's `Token2Wav.__init__` loads `ckpt/hift/hift.pt` from its working directory, so the object is
assembled with the same attributes its constructor sets for 24 kHz (hop 480, HiFT through `HiFTInference`).
Every random draw (the flow's `randn_like`, the vocoder's `rand` and `randn_like`) is recorded in order
and stored, so our implementation replays them. Nothing of upstream is copied here.

    PYTHONPATH=/tmp/upstream-deps .venv/bin/python benchmarks/stream_golden.py \
        --upstream /tmp/glmtts-upstream --out tests/golden
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

import upstream_glmtts  # benchmarks/upstream_glmtts.py: building upstream's modules on our checkpoint
from glmtts_mcp.engine.checkpoint.tiny import make_tiny_checkpoint
from glmtts_mcp.engine.models.token2wav_stream import FLOW_NOISE
from glmtts_mcp.engine.models.vocoder import DRAW_RAND_INI, DRAW_SINE_NOISE

UPSTREAM_COMMIT = "c5dc7aecc3b4032032d631b271e767893984f821"
CASES = {  # name -> (block sizes, look-ahead sizes, tokens)
    "token2wav_stream": ([25, 50, 200], [12, 25, 100], 65),
    "token2wav_stream_small_first": ([10, 25, 50], [5, 12, 25], 50),
}
PROMPT_TOKENS, PROMPT_FRAMES, SEED = 40, 80, 1234
# Measured on these cases: upstream fp32 and ours fp32 each differ from ours in float64 (same draws) by at
# most 1.2e-7 on the wav (peak about 0.09): about 10x that, as the other golden cases do.
TOLERANCE = {"atol": 1e-6, "rtol": 0.0}


@contextlib.contextmanager
def recorded_draws(log: list[tuple[str, torch.Tensor]]) -> Iterator[None]:
    """torch.randn_like and torch.rand, as upstream's flow and HiFT call them, record what they return."""
    randn_like, rand = torch.randn_like, torch.rand

    def recording(name, fn):
        def call(*args, **kwargs):
            out = fn(*args, **kwargs)
            log.append((name, out.detach().clone().contiguous()))
            return out

        return call

    torch.randn_like, torch.rand = recording("randn_like", randn_like), recording("rand", rand)
    try:
        yield
    finally:
        torch.randn_like, torch.rand = randn_like, rand


def draws_per_call(draws: list[tuple[str, torch.Tensor]], calls: int) -> list[dict[str, torch.Tensor]]:
    """Each token2wav_stream call's draws by the names the golden cases store them under: the flow's
    randn_like, then HiFT's rand (phases), randn_like (sine noise) and randn_like (the noise branch, which
    never reaches the output and is not kept)."""
    names = ["randn_like", "rand", "randn_like", "randn_like"]
    if len(draws) != len(names) * calls or any(
        [n for n, _ in draws[i : i + 4]] != names for i in range(0, len(draws), 4)
    ):
        raise SystemExit(f"unexpected draws for {calls} calls: {[(n, tuple(t.shape)) for n, t in draws]}")
    return [
        {FLOW_NOISE: draws[4 * c][1], DRAW_RAND_INI: draws[4 * c + 1][1], DRAW_SINE_NOISE: draws[4 * c + 2][1]}
        for c in range(calls)
    ]


def run_case(upstream: Path, checkpoint: Path, blocks: list[int], look: list[int], n_tokens: int) -> dict:
    with upstream_glmtts.on_path(upstream):
        from utils.hift_util import HiFTInference  # upstream
        from utils.tts_model_util import Token2Wav  # upstream

        device = torch.device("cpu")
        flow = upstream_glmtts.build_flow(checkpoint, device)
        vocoder = HiFTInference.__new__(HiFTInference)
        vocoder.device, vocoder.sample_rate, vocoder.model = (
            device,
            24000,
            upstream_glmtts.build_hift(checkpoint, device),
        )
        token2wav = Token2Wav.__new__(Token2Wav)
        token2wav.device, token2wav.flow, token2wav.input_frame_rate = device, flow, flow.input_frame_rate
        token2wav.hop_size, token2wav.sample_rate, token2wav.vocoder = 480, 24000, vocoder

        gen = torch.Generator().manual_seed(SEED)
        vocab = flow.estimator.text_emb_layer.text_embed.num_embeddings - 1
        tokens = torch.randint(0, vocab, (n_tokens,), generator=gen)
        prompt_tokens = torch.randint(0, vocab, (1, PROMPT_TOKENS), generator=gen)
        prompt_mel = torch.randn(1, PROMPT_FRAMES, 80, generator=gen) - 5.0
        embedding = torch.randn(1, 192, generator=gen)

        mels: list[torch.Tensor] = []
        inference_with_cache = flow.inference_with_cache

        def recording_flow(*args, **kwargs):
            mel, cache = inference_with_cache(*args, **kwargs)
            mels.append(mel.clone())
            return mel, cache

        flow.inference_with_cache = recording_flow
        draws: list[tuple[str, torch.Tensor]] = []
        torch.manual_seed(SEED)
        with recorded_draws(draws):
            wav, sec_list, diff_list, chunks = token2wav.token2wav_stream(
                tokens.tolist(),
                block_sizes=blocks,
                look_future_sizes=look,
                fade_sec=0.1,
                embedding=embedding,
                prompt_token_list=prompt_tokens,
                prompt_feat_td=prompt_mel,
            )
    io = {
        "tokens": tokens,
        "prompt_tokens": prompt_tokens,
        "prompt_mel": prompt_mel,
        "embedding": embedding,
        "wav": wav[0],
        "chunk_lengths": torch.tensor([len(c) for c in chunks]),
    }
    for call, (mel, call_draws) in enumerate(zip(mels, draws_per_call(draws, len(mels)), strict=True)):
        io[f"call{call}_mel"] = mel
        io.update({f"call{call}_{name}": draw for name, draw in call_draws.items()})
    return {"io": io, "calls": len(mels), "diff_list": diff_list, "sec_list": sec_list}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--upstream", type=Path, required=True, help="an extracted zai-org/GLM-TTS checkout")
    parser.add_argument("--out", type=Path, required=True, help="the golden folder to write the cases into")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = make_tiny_checkpoint(Path(tmp) / "GLM-TTS", size="tiny", seed=0)
        for name, (blocks, look, n_tokens) in CASES.items():
            result = run_case(args.upstream, checkpoint, blocks, look, n_tokens)
            folder = args.out / name
            folder.mkdir(parents=True, exist_ok=True)
            io = {k: v.contiguous() for k, v in result["io"].items()}
            save_file(io, str(folder / "io.safetensors"))
            case = {
                "kind": "token2wav_stream",
                "module": "utils.tts_model_util.Token2Wav.token2wav_stream (flow.flow.Flow.inference_with_cache "
                "is_causal=True + HiFTGenerator.inference)",
                "upstream_commit": UPSTREAM_COMMIT,
                "checkpoint": "make_tiny_checkpoint(size='tiny', seed=0): the real flags, random weights (not stored)",
                "entry": "token2wav_stream(tokens, block_sizes, look_future_sizes, fade_sec=0.1, embedding, "
                "prompt_token_list (1, P), prompt_feat_td (1, Tp, 80)) after torch.manual_seed(seed)",
                "block_sizes": blocks,
                "look_future_sizes": look,
                "fade_sec": 0.1,
                "seed": SEED,
                "tolerance": TOLERANCE,
                "calls": result["calls"],
                "upstream_diff_list_percent": result["diff_list"],
                "upstream_sec_list": result["sec_list"],
                "rng": "callN_flow_noise: the flow's randn_like; callN_rng_rand_ini / callN_rng_sine_noise: HiFT's "
                "draws (its third draw, the noise branch, never reaches the output and is not stored)",
                "environment": {
                    "python": platform.python_version(),
                    "torch": torch.__version__,
                    "numpy": np.__version__,
                    "threads": torch.get_num_threads(),
                },
            }
            (folder / "case.json").write_text(json.dumps(case, indent=1) + "\n", encoding="utf-8")
            print(f"{name}: {result['calls']} calls, chunks {io['chunk_lengths'].tolist()}, wav {len(io['wav'])}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
