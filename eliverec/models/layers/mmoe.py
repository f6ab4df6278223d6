"""Multi-gate mixture of experts (MMoE), one softmax gate per task (paper eq. 13, ref. [29])."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from eliverec.models.layers.mlp import MLP


class MMoE(nn.Module):
    """``f_k(x) = sum_e softmax(W_k x)_e * expert_e(x)`` for each task ``k``.

    >>> m = MMoE(in_dim=6, experts=3, expert_dim=4, tasks=2)
    >>> outs, gates = m(torch.randn(5, 6))
    >>> len(outs), tuple(outs[0].shape), tuple(gates.shape), bool(torch.allclose(gates.sum(-1), torch.ones(5, 2)))
    (2, (5, 4), (5, 2, 3), True)
    """

    def __init__(self, in_dim: int, experts: int, expert_dim: int, tasks: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.experts = nn.ModuleList(MLP(in_dim, [expert_dim], dropout=dropout) for _ in range(experts))
        self.gates = nn.Linear(in_dim, tasks * experts)
        nn.init.zeros_(self.gates.weight)  # start as an even mixture
        nn.init.zeros_(self.gates.bias)
        self.tasks, self.n_experts = tasks, experts

    def forward(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        ex = torch.stack([e(x) for e in self.experts], dim=1)  # (B, E, h)
        g = torch.softmax(self.gates(x).view(-1, self.tasks, self.n_experts), dim=-1)  # (B, T, E)
        mixed = g @ ex  # (B, T, h)
        return list(mixed.unbind(1)), g
