"""Layer tests: masking, no NaN on all-padding input, distance correlation, InfoNCE, gates, SimHash."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from eliverec.models.eliverec import intention_weights, retrieve
from eliverec.models.layers import (
    AUGRU,
    DinAttention,
    GateUnit,
    HGNEncoder,
    MaskedGRU,
    MMoE,
    MultiHeadTargetAttention,
    SimHashTopK,
    TransformerBlock,
    distance_correlation,
    info_nce,
    masked_softmax,
)

MASK = torch.tensor([[False, False, True, True, True], [False] * 5, [True] * 5])


def reference_dcor(x: np.ndarray, y: np.ndarray) -> float:
    """Textbook sample distance correlation (Szekely, Rizzo & Bakirov 2007), slow and explicit."""
    n = len(x)

    def centred(m: np.ndarray) -> np.ndarray:
        d = cdist(m, m)
        out = np.empty_like(d)
        for i in range(n):
            for j in range(n):
                out[i, j] = d[i, j] - d[i].mean() - d[:, j].mean() + d.mean()
        return out

    a, b = centred(x), centred(y)
    dcov2, vx, vy = (a * b).mean(), (a * a).mean(), (b * b).mean()
    return float(np.sqrt(dcov2 / np.sqrt(vx * vy)))


def test_masked_softmax_zero_on_padding_and_zero_row_without_nan() -> None:
    w = masked_softmax(torch.randn(3, 5), MASK)
    assert torch.all(w[~MASK] == 0)
    assert torch.allclose(w[0].sum(), torch.tensor(1.0)) and torch.all(w[1] == 0)


@pytest.mark.parametrize("layer", ["transformer", "din", "mhta", "retrieve", "gru", "hgn"])
def test_all_padding_sequence_gives_finite_output_and_gradients(layer: str) -> None:
    torch.manual_seed(0)
    e = torch.randn(3, 5, 8, requires_grad=True)
    q = torch.randn(3, 8, requires_grad=True)
    if layer == "transformer":
        out = TransformerBlock(8, 2)(e, MASK)
        assert torch.all(out[~MASK] == 0)
    elif layer == "din":
        out, w = DinAttention(8)(q, e, MASK)
        assert torch.all(w[~MASK] == 0)
    elif layer == "mhta":
        out, w = MultiHeadTargetAttention(8, 2)(q, e, MASK)
        assert torch.all(w.permute(0, 2, 1)[~MASK] == 0)
    elif layer == "retrieve":
        out = retrieve(q, e, torch.rand(3, 5), MASK)
    elif layer == "gru":
        out = AUGRU(8)(MaskedGRU(8)(e, MASK), masked_softmax(torch.randn(3, 5), MASK))
    else:
        out = HGNEncoder(8, 5)(e, MASK, q)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(e.grad).all()
    assert q.grad is None or torch.isfinite(q.grad).all()
    if layer != "mhta":  # (the output projection's bias is all an empty sequence gives there)
        assert float(out[1].detach().abs().sum()) == 0.0  # the all-padding row carries nothing


def test_retrieval_puts_no_weight_on_padding() -> None:
    h = torch.randn(1, 4, 6)
    mask = torch.tensor([[False, False, True, True]])
    h_changed = h.clone()
    h_changed[0, :2] = 100.0  # whatever sits in padded positions must not matter
    q = torch.randn(1, 6)
    assert torch.allclose(retrieve(q, h, torch.ones(1, 4), mask), retrieve(q, h_changed, torch.ones(1, 4), mask))


def test_intention_weights_are_a_two_way_softmax() -> None:
    h, oc, os_ = torch.randn(2, 5, 4), torch.randn(2, 4), torch.randn(2, 4)
    mask = MASK[:2]
    pc = intention_weights(h, oc, os_, mask)
    ps = intention_weights(h, os_, oc, mask)
    assert torch.allclose((pc + ps)[mask], torch.ones(int(mask.sum())))
    assert torch.all(pc[~mask] == 0)


def test_dcor_independent_vs_identical() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(1000, 4, generator=g), torch.randn(1000, 4, generator=g)
    assert float(distance_correlation(x, y)) < 0.15  # the V-statistic's small-sample bias, about 0.12 here
    assert float(distance_correlation(x, x)) == pytest.approx(1.0, abs=1e-4)
    assert float(distance_correlation(x, torch.tanh(x @ torch.randn(4, 3, generator=g)))) > 0.6


def test_dcor_matches_reference_formula() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 3))
    y = x[:, :2] ** 2 + 0.5 * rng.normal(size=(40, 2))
    got = float(distance_correlation(torch.from_numpy(x), torch.from_numpy(y)))
    assert got == pytest.approx(reference_dcor(x, y), abs=1e-6)


def test_dcor_rejects_mismatched_rows_and_has_finite_gradient() -> None:
    with pytest.raises(ValueError, match="same number of rows"):
        distance_correlation(torch.randn(4, 2), torch.randn(5, 2))
    x = torch.randn(8, 3, requires_grad=True)
    distance_correlation(x, torch.randn(8, 2)).backward()
    assert torch.isfinite(x.grad).all()


def test_infonce_is_minimal_when_pairs_match() -> None:
    torch.manual_seed(0)
    z = torch.randn(16, 8)
    matched = info_nce(z, z, 0.5)
    assert matched < info_nce(z, z[torch.randperm(16)], 0.5)
    assert matched < info_nce(z, z + 0.5 * torch.randn(16, 8), 0.5)
    # perfectly aligned orthogonal codes approach the bound -log(e^(1/t) / (e^(1/t) + (B-1)))
    e = torch.eye(8)
    bound = -torch.log(torch.exp(torch.tensor(2.0)) / (torch.exp(torch.tensor(2.0)) + 7))
    assert float(info_nce(e, e, 0.5)) == pytest.approx(float(bound), abs=1e-5)


def test_infonce_same_user_rows_are_not_negatives_and_invalid_rows_drop() -> None:
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    users = torch.tensor([7, 7, 9])
    grouped = info_nce(z, z, 0.5, users.unsqueeze(0) == users.unsqueeze(1))
    assert grouped < info_nce(z, z, 0.5)
    only_first = info_nce(z, z, 0.5, valid=torch.tensor([1.0, 0.0, 0.0]))
    assert only_first == pytest.approx(float(info_nce(z, z, 0.5, valid=torch.tensor([1.0, 0.0, 0.0]))))
    assert float(only_first) != pytest.approx(float(info_nce(z, z, 0.5)))


def test_gate_unit_and_mmoe_shapes_and_ranges() -> None:
    gated, w = GateUnit(4, [3, 5])([torch.ones(2, 3), torch.ones(2, 5)], torch.randn(2, 4))
    assert gated.shape == (2, 8) and torch.all((w > 0) & (w < 1))
    assert torch.allclose(gated[:, :3], w[:, :1].expand(2, 3))
    outs, gates = MMoE(6, experts=3, expert_dim=4, tasks=3)(torch.randn(5, 6))
    assert [o.shape for o in outs] == [torch.Size([5, 4])] * 3 and torch.allclose(gates.sum(-1), torch.ones(5, 3))


def test_simhash_keeps_nearest_and_never_padding() -> None:
    torch.manual_seed(0)
    sh = SimHashTopK(16, bits=128, k=3)
    seq = torch.randn(2, 6, 16)
    mask = torch.tensor([[False, False, False, False, True, True], [True] * 6])
    idx, keep = sh(seq[:, 5], seq, mask)
    assert int(idx[1, 0]) == 5 and int(idx[0, 0]) == 5
    assert keep[0].tolist() == [True, True, False]  # only two real events in row 0
    assert bool(mask.gather(1, idx)[keep].all())


def test_fused_attention_matches_the_explicit_softmax_path() -> None:
    from eliverec.models.layers.transformer import TransformerBlock

    torch.manual_seed(0)
    blk = TransformerBlock(8, heads=2)
    h, mask = torch.randn(6, 7, 8), torch.rand(6, 7) > 0.4
    mask[2] = False  # a sequence with no event at all
    slow, _ = blk.attention(h, mask)
    fast = blk.fused_attention(h, mask)
    real = mask.unsqueeze(-1)
    assert torch.allclose(slow * real, fast * real, atol=1e-5)
    assert not torch.isnan(blk(h, mask)).any() and blk(h, mask)[2].abs().sum() == 0
