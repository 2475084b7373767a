"""Run upstream GLM-TTS's glmtts_inference.jsonl_generate on one item, recording what each step made.

Started by e2e_parity.py in its own process, with upstream's checkout and its packages (transformers<5,
WeTextProcessing, x_transformers, ...) first on PYTHONPATH, so the project's venv stays as it is.

    e2e_upstream_worker.py UPSTREAM CHECKPOINT REFERENCE TRANSCRIPT TEXT SEED DEVICE OUT_DIR [stream]

Upstream runs as its own script runs it: `load_frontends` (TTSFrontEnd, TextFrontEnd), its speech tokenizer
from `yaml_util.load_speech_tokenizer`, `Token2Wav`, and `jsonl_generate` over a one-line jsonl, whose
`generate_long` drives the segment loop with the history cache. Its LLM, flow and vocoder are built by
upstream_glmtts (same constructor calls at the checkpoint's size). Workarounds, named in upstream_glmtts
and benchmarks/README.md: `.cuda()` redirected on a CPU, torchaudio file I/O through soundfile, and, when
the checkpoint's tokenizer folder has no tokenization_chatglm.py (the tiny checkpoint), AutoTokenizer
answered by our tokenizer (equal to upstream's on the golden text_tokenizer cases); non-audio ids that a
random-weight LLM emits are dropped before upstream's flow, as ours drops them (upstream would stop with an
IndexError).
With `stream`, each segment's tokens go through upstream's `Token2Wav.token2wav_stream` (its default
blocks) in place of `token2wav_with_cache`, every draw of its flow and vocoder calls recorded so that ours
can replay them (upstream has no streaming whole path: this is its chunked recipe on its own segment loop).
Writes OUT_DIR/upstream.safetensors (prompt features; per segment tokens, mel or chunk lengths and draws,
wav; the narration) and OUT_DIR/upstream.json (normalized texts, segment count, flow calls per segment).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

import upstream_glmtts
from glmtts_mcp.engine.checkpoint.layout import TEXT_TOKENIZER_DIR
from glmtts_mcp.engine.frontend.text_tokenizer import TextTokenizer
from stream_golden import draws_per_call, recorded_draws


class _OurTokenizer:
    """Stands in for AutoTokenizer's ChatGLM4Tokenizer when the checkpoint ships no Python file."""

    def __init__(self, folder: Path) -> None:
        self._tokenizer = TextTokenizer.from_dir(folder)

    def encode(self, text: str) -> list[int]:
        return self._tokenizer.encode(text)


def _workdir(upstream: Path, checkpoint: Path) -> Path:
    """A folder laid out as upstream's scripts expect their working directory (ckpt/, frontend/, configs/)."""
    work = Path(tempfile.mkdtemp(prefix="glmtts-upstream-"))
    (work / "ckpt").symlink_to(checkpoint.resolve())
    (work / "frontend").symlink_to((checkpoint / "frontend").resolve())
    (work / "configs").symlink_to((upstream / "configs").resolve())
    (work / "examples").mkdir()
    return work


def main() -> int:
    upstream, checkpoint, reference = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]).resolve()
    transcript, text, seed, device_name, out = (
        sys.argv[4],
        sys.argv[5],
        int(sys.argv[6]),
        sys.argv[7],
        Path(sys.argv[8]),
    )
    stream = sys.argv[9:] == ["stream"]
    device = torch.device(device_name)
    work = _workdir(upstream, checkpoint)
    os.chdir(work)
    record: dict[str, torch.Tensor] = {}
    segments: list[dict] = []

    import transformers

    tokenizer_dir = checkpoint / TEXT_TOKENIZER_DIR
    if not any(tokenizer_dir.glob("*.py")):
        transformers.AutoTokenizer.from_pretrained = lambda *args, **kwargs: _OurTokenizer(tokenizer_dir)

    with upstream_glmtts.cuda_calls_to(device), upstream_glmtts.soundfile_audio_io():
        import glmtts_inference as gi  # upstream's script, imported (its __main__ block does not run)
        from utils import tts_model_util, yaml_util  # upstream
        from utils.hift_util import HiFTInference  # upstream

        gi.DEVICE = device
        model, extractor = yaml_util.load_speech_tokenizer(os.path.join("ckpt", "speech_tokenizer"))
        frontend, text_frontend = gi.load_frontends(gi.SpeechTokenizer(model, extractor), sample_rate=24000)
        frontend.device = device
        llm = upstream_glmtts.build_llm(checkpoint, gi.get_special_token_ids(frontend.tokenize_fn), device)
        hift = upstream_glmtts.build_hift(checkpoint, device)

        def load_hift(*args: object, **kwargs: object):  # HiFTInference around the sized model
            inference = object.__new__(HiFTInference)
            inference.device, inference.sample_rate, inference.model = device, 24000, hift
            return inference

        tts_model_util.load_hift = load_hift
        token2wav = tts_model_util.Token2Wav(upstream_glmtts.build_flow(checkpoint, device), 24000, device)

        def recorded(name: str, fn):
            def call(*args, **kwargs):
                result = fn(*args, **kwargs)
                record[name] = (result[0] if isinstance(result, tuple) else result).detach().cpu()
                return result

            return call

        frontend._extract_speech_token = recorded("prompt_speech_ids", frontend._extract_speech_token)
        frontend._extract_speech_feat = recorded("prompt_mel", frontend._extract_speech_feat)
        frontend._extract_spk_embedding = recorded("speaker_embedding", frontend._extract_spk_embedding)

        def llm_forward(**kwargs):
            tokens = gi.local_llm_forward(**kwargs)
            segments.append(
                {
                    "tokens": list(tokens),
                    "prompt_text_len": int(kwargs["prompt_text_token"].shape[1]),
                    "prompt_speech_len": int(kwargs["prompt_speech_token"].shape[1]),
                }
            )
            return tokens

        audio_ids = range(llm.ate - llm.ats + 1)

        def flow_forward(**kwargs):
            # Random weights emit non-audio ids, which upstream's flow cannot embed (IndexError; real weights
            # practically never do): they are dropped here as our pipeline drops them, and counted.
            tokens = kwargs["token_list"]
            kwargs["token_list"] = [t for t in tokens if t in audio_ids]
            segments[-1]["dropped"] = len(tokens) - len(kwargs["token_list"])
            if stream:
                draws: list[tuple[str, torch.Tensor]] = []
                with recorded_draws(draws):
                    wav, _seconds, _diffs, chunks = kwargs["flow"].token2wav_stream(
                        kwargs["token_list"],
                        embedding=kwargs["embedding"],
                        prompt_token_list=kwargs["prompt_speech_tokens"],
                        prompt_feat_td=kwargs["speech_feat"],
                    )
                segments[-1]["chunks"] = [len(c) for c in chunks]
                segments[-1]["draws"] = draws_per_call(draws, len(draws) // 4)
                segments[-1]["wav"] = wav
                return wav, None
            wav, mel = gi.local_flow_forward(**kwargs)
            segments[-1]["wav"], segments[-1]["mel"] = wav, mel.detach().cpu()
            return wav, mel

        generate_long = gi.generate_long

        def generate(*args, **kwargs):
            speech, mel, tokens, text_tn = generate_long(
                *args, **kwargs, local_llm_forward=llm_forward, local_flow_forward=flow_forward
            )
            record["narration"], segments_text[:] = speech.detach().cpu(), text_tn["syn_text_tn"]
            return speech, mel, tokens, text_tn

        segments_text: list[str] = []
        gi.generate_long = generate
        gi.frontend, gi.text_frontend, gi.llm, gi.flow = frontend, text_frontend, llm, token2wav
        item = {"uttid": "e2e", "prompt_text": transcript, "prompt_speech": str(reference), "syn_text": text}
        (work / "examples" / "e2e.jsonl").write_text(json.dumps(item, ensure_ascii=False) + "\n", encoding="utf-8")
        (work / "outputs").mkdir()
        start = time.perf_counter()
        gi.jsonl_generate("e2e", str(work / "outputs"), sample_rate=24000, seed=seed, use_cache=True)
        record_seconds = time.perf_counter() - start

    if "narration" not in record:
        print("upstream's jsonl_generate failed on this item (its traceback is above)", file=sys.stderr)
        return 1
    for index, segment in enumerate(segments):
        record[f"segment{index}.tokens"] = torch.tensor(segment["tokens"], dtype=torch.int64)
        record[f"segment{index}.wav"] = segment["wav"]
        if stream:
            record[f"segment{index}.chunk_lengths"] = torch.tensor(segment["chunks"], dtype=torch.int64)
            for call, draws in enumerate(segment["draws"]):
                record.update({f"segment{index}.call{call}_{name}": draw for name, draw in draws.items()})
        else:
            record[f"segment{index}.mel"] = segment["mel"]
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in record.items()}, out / "upstream.safetensors")
    meta = {
        "segments": len(segments),
        "segment_texts": segments_text,
        "prompt_text_normalized": text_frontend.text_normalize(transcript),
        "history": [{k: s[k] for k in ("prompt_text_len", "prompt_speech_len", "dropped")} for s in segments],
        "stream_calls": [len(s["draws"]) for s in segments] if stream else None,
        "transformers": transformers.__version__,
        "seconds": record_seconds,
    }
    (out / "upstream.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
