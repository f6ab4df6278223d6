"""DIN's activation unit: softmax weights (a weighted mean) or DIN's unnormalised weights (a soft count)."""

from __future__ import annotations

import torch

from eliverec.models.layers import DinAttention


def test_unnormalised_weights_keep_how_many_behaviours_match() -> None:
    torch.manual_seed(0)
    att = DinAttention(4, hidden=[8], normalize=False)
    q, item = torch.randn(1, 4), torch.randn(1, 1, 4)
    seq = item.expand(1, 6, 4)
    two = torch.tensor([[False, False, False, False, True, True]])
    five = torch.tensor([[False, True, True, True, True, True]])
    u2, w2 = att(q, seq, two)
    u5, _ = att(q, seq, five)
    torch.testing.assert_close(u5, u2 * 2.5)  # same behaviour 5 times vs 2 times: 2.5x the pooled vector
    assert float(w2[0, :4].abs().sum()) == 0.0 and bool(((w2[0, 4:] > 0) & (w2[0, 4:] < 1)).all())


def test_softmax_weights_forget_the_count() -> None:
    torch.manual_seed(0)
    att = DinAttention(4, hidden=[8])
    q, item = torch.randn(1, 4), torch.randn(1, 1, 4)
    seq = item.expand(1, 6, 4)
    u2, _ = att(q, seq, torch.tensor([[False] * 4 + [True] * 2]))
    u5, _ = att(q, seq, torch.tensor([[False] + [True] * 5]))
    torch.testing.assert_close(u5, u2)
