"""Embedding gate unit (paper eq. 12)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class GateUnit(nn.Module):
    """Per-feature gates driven by the dynamic context (eq. 12).

    ``w_i = sigmoid(MLP(e_d; Theta_{F_i}))``, one two-layer MLP per feature ``F_i`` (computed for all
    features at once with batched weights); the output is ``concat_i(F_i * w_i)``.

    >>> g = GateUnit(context_dim=3, feature_dims=[2, 4], hidden=5)
    >>> out, w = g([torch.ones(6, 2), torch.ones(6, 4)], torch.randn(6, 3))
    >>> tuple(out.shape), tuple(w.shape), bool(((w > 0) & (w < 1)).all())
    ((6, 6), (6, 2), True)
    """

    def __init__(self, context_dim: int, feature_dims: Sequence[int], hidden: int = 16) -> None:
        super().__init__()
        n = len(feature_dims)
        self.feature_dims = list(feature_dims)
        self.w1 = nn.Parameter(torch.randn(n, context_dim, hidden) * (2.0 / context_dim) ** 0.5)
        self.b1 = nn.Parameter(torch.zeros(n, hidden))
        self.w2 = nn.Parameter(torch.randn(n, hidden) * (1.0 / hidden) ** 0.5)
        self.b2 = nn.Parameter(torch.full((n,), 1.0))  # gates start open (sigmoid(1) = 0.73)

    def forward(self, features: Sequence[Tensor], context: Tensor) -> tuple[Tensor, Tensor]:
        """``features`` list of (B, d_i), ``context`` e_d (B, c) -> (gated concat (B, sum d_i), gates (B, n))."""
        hid = torch.relu(torch.einsum("bc,nch->bnh", context, self.w1) + self.b1)  # (B, n, hidden)
        gates = torch.sigmoid((hid * self.w2).sum(-1) + self.b2)  # (B, n), eq. 12
        gated = [f * gates[:, i : i + 1] for i, f in enumerate(features)]
        return torch.cat(gated, dim=-1), gates
