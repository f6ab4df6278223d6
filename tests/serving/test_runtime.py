"""The ONNX Runtime scorer gives the torch network's scores; a network that cannot be exported is served by torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eliverec.config import load_settings
from eliverec.features.batch import LABELS, random_batch
from eliverec.models import build_model
from eliverec.scoring import runtime
from eliverec.scoring.runtime import INPUTS, OnnxScorer, TorchScorer, build_scorer
from tests.conftest import PARAMS


def _net(name: str = "eliverec"):  # noqa: ANN202 - a RankingModel
    s = load_settings("tiny", overrides=[f"model.name={name}"], params=PARAMS)
    return build_model(s).eval(), s.features


def _one_user(rows: int, seed: int) -> dict[str, torch.Tensor]:
    """A request-shaped batch: one user's state on every row, candidates differ."""
    _, f = _net()
    b = {k: v for k, v in random_batch(f.vocab, rows, f.seq_len, seed=seed).items() if k in INPUTS}
    for k in ("user", "product_seq", "product_len", "channel_seq", "channel_len"):
        b[k] = b[k][:1].expand_as(b[k]).contiguous()
    return b


@pytest.mark.parametrize("name", ["eliverec", "din_dual", "bst"])
def test_onnx_scores_equal_torch_for_any_number_of_candidates(name: str) -> None:
    torch.manual_seed(0)
    net, f = _net(name)
    for p in net.parameters():  # away from the initial weights, so every path carries signal
        p.data.add_(0.05 * torch.randn_like(p))
    onnx = build_scorer(net, f.vocab, f.seq_len, "onnx")
    assert isinstance(onnx, OnnxScorer)
    eager = TorchScorer(net)
    for rows, seed in ((1, 3), (100, 4), (333, 5)):
        batch = _one_user(rows, seed)
        got, want = onnx(batch), eager(batch)
        for k in LABELS:
            assert got[k].shape == (rows,) and got[k].dtype == np.float32
            np.testing.assert_allclose(got[k], want[k], atol=1e-5, rtol=1e-5, err_msg=f"{name} {k} {rows}")


def test_unexportable_or_disagreeing_networks_are_served_by_torch(monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    net, f = _net("dasl")  # its matrix exponential has no ONNX operator
    assert isinstance(build_scorer(net, f.vocab, f.seq_len, "onnx", name="dasl-net"), TorchScorer)
    assert "dasl-net: ONNX export failed" in caplog.text
    net, f = _net()
    monkeypatch.setattr(runtime, "ATOL", -1.0)  # any difference is too large
    assert isinstance(build_scorer(net, f.vocab, f.seq_len, "onnx"), TorchScorer)
    assert "differ from torch" in caplog.text
    assert isinstance(build_scorer(net, f.vocab, f.seq_len, "torch"), TorchScorer)


@pytest.mark.parametrize("model", [{}, {"backbone": "din"}, {"backbone": "hgn"}, {"disentangle": False},
                                   {"prototypes": "cross"}, {"prototypes": "learned"}, {"match_features": False}])
def test_serving_forward_equals_the_per_row_forward(model: dict) -> None:
    """score(share_user=True) (one-row user state, eq. 6-7 as matrix products, match counts broadcast) equals
    the training code's per-row forward on the same request, for every eLiveRec encoder option."""
    from tests.models.helpers import SEQ_LEN, settings_for, small_vocab

    torch.manual_seed(1)
    net = build_model(settings_for("eliverec", **model), small_vocab(), SEQ_LEN).eval()
    for p in net.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    for rows, seed in ((2, 0), (7, 1), (100, 2)):  # (the per-row path does not take a batch of 1)
        b = {k: v for k, v in random_batch(small_vocab(), rows, SEQ_LEN, seed=seed).items() if k in INPUTS}
        for k in ("user", "product_seq", "product_len", "channel_seq", "channel_len"):
            b[k] = b[k][:1].expand_as(b[k]).contiguous()
        shared, per_row = net.score(b, share_user=True), net.score(b, share_user=False)
        for k in LABELS:
            torch.testing.assert_close(shared[k], per_row[k], atol=1e-6, rtol=1e-6, msg=f"{model} {k} {rows}")
