"""How a loaded network scores a request: ONNX Runtime (``serving.runtime: onnx``, the default) or torch.

A request is one user and ~100 candidates: the forward pass is a few hundred small tensor ops, and
in torch eager the fixed cost per op (dispatch, autograd checks, allocation) outweighs the
arithmetic (profile in ``benchmarks/results/serving.md``). The ``onnx`` runtime exports the
serving forward, ``network.score(batch, share_user=True)`` (the user's state once, the serving
position, task scores out), to ONNX with the candidate axis dynamic, and runs it on ONNX Runtime
with ``serving.torch_threads`` intra-op threads, which fuses and plans the graph once.

The export is checked at load against the torch network on probe batches (1, 7 and 64 rows,
random ids, empty and full sequences): a network that does not export, or whose scores differ by
more than :data:`ATOL`, is served by torch instead and the reason is logged. Both runtimes return
the same ``{task: float32 array}``; ``tests/serving/test_runtime.py`` checks their parity.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable, Mapping
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from eliverec.features.batch import LABELS, random_batch

log = logging.getLogger(__name__)
Runtime = Literal["onnx", "torch"]
Scorer = Callable[[Mapping[str, Tensor]], dict[str, np.ndarray]]
INPUTS: tuple[str, ...] = (
    "user", "profile", "context", "position", "channel", "dynamic", "dynamic_cats",
    "product_seq", "product_len", "channel_seq", "channel_len",
)  # fmt: skip
#: Largest absolute score difference between the export and the torch network accepted at load.
ATOL = 1e-5
OPSET = 17
PROBES: tuple[tuple[int, int], ...] = ((1, 0), (7, 1), (64, 2))  # (rows, seed) of the load-time parity check


class TorchScorer:
    """The network's ``score`` in eval mode under ``torch.inference_mode``, one user per request."""

    runtime = "torch"

    def __init__(self, network: nn.Module) -> None:
        self.network = network

    def __call__(self, batch: Mapping[str, Tensor]) -> dict[str, np.ndarray]:
        net = self.network
        if net.training:  # once per loaded model: score() then skips switching modes per request
            net.eval()
        with torch.inference_mode():
            out = net.score(batch, share_user=True)
        return {k: v.float().numpy() for k, v in out.items()}


class OnnxScorer:
    """The exported serving forward on an ONNX Runtime session."""

    runtime = "onnx"

    def __init__(self, model: bytes, threads: int) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        for pool in ("intra_op", "inter_op"):  # no busy-waiting pool threads on a few shared cores
            opts.add_session_config_entry(f"session.{pool}.allow_spinning", "0")
        opts.log_severity_level = 3  # errors only
        self.session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]  # the exporter drops inputs a network never reads

    def __call__(self, batch: Mapping[str, Tensor]) -> dict[str, np.ndarray]:
        out = self.session.run(None, {k: batch[k].numpy() for k in self.inputs})
        return dict(zip(LABELS, out, strict=True))


class _ServingForward(nn.Module):
    """``network.score(batch, share_user=True)`` with positional tensors in and a tuple out (what export traces)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        out = self.network.score(dict(zip(INPUTS, inputs, strict=True)), share_user=True)
        return tuple(out[k].float() for k in LABELS)


def export_onnx(network: nn.Module, vocab: Mapping[str, int], seq_len: int) -> bytes:
    """The serving forward of ``network`` (eval mode) as ONNX bytes, any number of candidates."""
    network.eval()
    example = random_batch(vocab, 8, seq_len, seed=0)
    buf = io.BytesIO()
    axes = {k: {0: "candidates"} for k in (*INPUTS, *LABELS)}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer notes on python ints taken from shapes: checked by the probes
        torch.onnx.export(_ServingForward(network), tuple(example[k] for k in INPUTS), buf, dynamo=False,
                          input_names=list(INPUTS), output_names=list(LABELS), dynamic_axes=axes,
                          opset_version=OPSET)
    return buf.getvalue()


def max_difference(a: Scorer, b: Scorer, vocab: Mapping[str, int], seq_len: int) -> float:
    """Largest absolute difference of any task score between two scorers on the probe batches."""
    worst = 0.0
    for rows, seed in PROBES:
        batch = {k: v for k, v in random_batch(vocab, rows, seq_len, seed=seed).items() if k in INPUTS}
        x, y = a(batch), b(batch)
        worst = max(worst, *(float(np.max(np.abs(x[k] - y[k]))) for k in LABELS))
    return worst


def build_scorer(network: nn.Module, vocab: Mapping[str, int], seq_len: int, runtime: Runtime = "onnx",
                 threads: int = 1, name: str = "model") -> Scorer:
    """The scorer of ``network`` on ``runtime``; torch when the ONNX export fails or disagrees (logged)."""
    eager = TorchScorer(network)
    if runtime == "torch":
        return eager
    try:
        onnx = OnnxScorer(export_onnx(network, vocab, seq_len), threads)
        diff = max_difference(onnx, eager, vocab, seq_len)
    except Exception as exc:  # noqa: BLE001 - any export or runtime failure: serve with torch
        log.warning("%s: ONNX export failed (%s: %s); serving with torch", name, type(exc).__name__, exc)
        return eager
    if not diff <= ATOL:
        log.warning("%s: ONNX scores differ from torch by %.3g (> %g); serving with torch", name, diff, ATOL)
        return eager
    return onnx
