"""Hierarchical gating network (HGN, Ma et al. 2019) as a sequence encoder."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class HGNEncoder(nn.Module):
    """Feature gating then instance gating, personalised by the user vector ``u``.

    Feature gate: ``e'_i = e_i * sigmoid(W_1 e_i + W_2 u + b)``; instance gate:
    ``h_i = e'_i * sigmoid(w_3 . e'_i + u W_4)`` where ``W_4`` gives one score per position.
    Padded positions stay zero.

    >>> enc = HGNEncoder(4, max_len=3)
    >>> h = enc(torch.randn(2, 3, 4), torch.tensor([[False, True, True]] * 2), torch.randn(2, 4))
    >>> tuple(h.shape), float(h[:, 0].abs().sum())
    ((2, 3, 4), 0.0)
    """

    def __init__(self, dim: int, max_len: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, dim)
        self.w2 = nn.Linear(dim, dim, bias=False)
        self.w3 = nn.Linear(dim, 1, bias=False)
        self.w4 = nn.Linear(dim, max_len, bias=False)

    def forward(self, e: Tensor, mask: Tensor, user: Tensor | None = None) -> Tensor:
        """``e`` (B, L, d), ``mask`` (B, L), ``user`` (B, d) -> ``H`` (B, L, d)."""
        L = e.shape[1]
        u = torch.zeros_like(e[:, 0]) if user is None else user
        f = e * torch.sigmoid(self.w1(e) + self.w2(u).unsqueeze(1))  # feature gating
        g = torch.sigmoid(self.w3(f).squeeze(-1) + self.w4(u)[:, -L:])  # instance gating, (B, L)
        return f * g.unsqueeze(-1) * mask.unsqueeze(-1).to(e.dtype)
