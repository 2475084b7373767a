"""The LLM's linear layers on a CPU: oneDNN with prepacked weights, so a step over 8 sequences costs
about what a step over 1 does.

torch's default CPU matmul (MKL) runs the small matrix products of a batched decode step (2 to 8
rows against a 2048 x 6144 weight) at a few GFLOP/s on AVX2 machines such as this project's AMD
EPYC: 8 rows cost 4 to 40x one row, so batching sequences bought nothing (benchmarks/README.md,
bench_concurrency). oneDNN's inner product with its weight reordered once, at load, into the
blocked layout it computes from stays memory-bound up to a few dozen rows (8 rows: about 1.3x one
row). `prepack_llm_linears` swaps the decoder layers' projections for `PackedLinear` and drops the
dense weights, so the model keeps one copy of its weights.

The output projection is tied to the input embedding (the real checkpoint holds one 98,304 x 2048
matrix for both, 0.8 GB in fp32); a packed copy would cost that again, so it keeps the shared dense
weight and is computed as `W @ x.T` (`TiedOutputLinear`): MKL's tall-skinny product, which costs
2 to 3x one row for 8 rows instead of 7x for `x @ W.T`. An untied output projection is packed.

oneDNN computes bf16 only with AVX-512 (bw, vl, dq) or AVX-NE-CONVERT: where a dtype does not run,
the model stays dense, with one log line. One row at a time, MKL's matrix-vector product is the
faster one (oneDNN's single-row step measured 1.5 to 2.5x slower here), so the engine packs only
when it batches (`--max-batch` above 1).
"""

from __future__ import annotations

import logging

import torch
from transformers import LlamaForCausalLM

log = logging.getLogger(__name__)

PROJECTIONS = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)


class PackedLinear(torch.nn.Module):
    """A bias-free linear layer whose weight lives in oneDNN's blocked layout (no dense copy kept)."""

    in_features: int
    out_features: int
    packed_weight: torch.Tensor

    def __init__(self, dense: torch.nn.Linear) -> None:
        super().__init__()
        if dense.bias is not None:
            raise ValueError("PackedLinear packs the Llama's bias-free projections only")
        self.in_features, self.out_features = dense.in_features, dense.out_features
        self.register_buffer("packed_weight", torch.ops.mkldnn._reorder_linear_weight(dense.weight.detach()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        out = torch.ops.mkldnn._linear_pointwise(rows, self.packed_weight, None, "none", [], "")
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, oneDNN prepacked"


class TiedOutputLinear(torch.nn.Module):
    """The output projection on the embedding's own (shared) weight, as `W @ x.T`."""

    def __init__(self, dense: torch.nn.Linear) -> None:
        super().__init__()
        self.weight = dense.weight  # the same Parameter as the input embedding's: no copy

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        return (self.weight @ rows.T).T.reshape(*x.shape[:-1], self.weight.shape[0])


def onednn_failure(dtype: torch.dtype) -> str | None:
    """Why oneDNN's packed linear cannot run `dtype` here (None: it can), tried on a small layer."""
    if not torch.backends.mkldnn.is_available():
        return "this torch build has no oneDNN (mkldnn)"
    try:
        probe = torch.nn.Linear(32, 16, bias=False).to(dtype)
        with torch.inference_mode():
            got = PackedLinear(probe)(torch.ones(2, 32, dtype=dtype))
            want = probe(torch.ones(2, 32, dtype=dtype))
        if not torch.allclose(got.float(), want.float(), rtol=1e-2, atol=1e-2):
            return "its packed linear gives wrong results on a probe layer"
    except (RuntimeError, NotImplementedError) as exc:
        return str(exc).strip().splitlines()[-1]
    return None


def prepack_llm_linears(model: LlamaForCausalLM) -> bool:
    """Run the LLM's linears through oneDNN packed weights if it is on the CPU and oneDNN runs its dtype.

    Replaces the modules in place, layer by layer. Returns whether it packed; when it cannot, says
    why in one log line and leaves the model as it was. Memory: the packed model holds the same bytes
    as the dense one (6.2 GiB RSS at the real size in fp32, measured in benchmarks/README.md).
    """
    weight = model.get_input_embeddings().weight
    if weight.device.type != "cpu":
        return False
    reason = onednn_failure(weight.dtype)
    if reason is not None:
        log.info(
            "LLM linears stay on torch's default CPU matmul in %s (oneDNN cannot run it here: %s); "
            "batched decoding gains little on this CPU",
            str(weight.dtype).removeprefix("torch."),
            reason,
        )
        return False
    with torch.no_grad():
        for layer in model.model.layers:
            for path in PROJECTIONS:
                parent_name, name = path.split(".")
                parent = getattr(layer, parent_name)
                setattr(parent, name, PackedLinear(getattr(parent, name)))
        tied = model.lm_head.weight is weight
        model.lm_head = TiedOutputLinear(model.lm_head) if tied else PackedLinear(model.lm_head)
        # transformers maps the safetensors files and the dense weights are views of that mapping: it
        # stays open (its pages counted in the RSS, 5.3 GiB at the real size) while any tensor still views
        # it. The rest (embedding, norms) moves into the process's own memory, so the mapping closes.
        for tensor in (*model.parameters(), *model.buffers()):
            if not tensor.is_mkldnn:
                tensor.data = tensor.data.clone()
    log.info(
        "LLM linears prepacked for oneDNN (%s, one copy of the weights; the output projection %s)",
        str(weight.dtype).removeprefix("torch."),
        "shares the input embedding's" if tied else "packed too",
    )
    return True
