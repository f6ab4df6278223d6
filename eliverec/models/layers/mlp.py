"""MLP tower (the "three MLP layers" of eq. 11 and the towers of eq. 13)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class MLP(nn.Module):
    """``x -> Linear -> PReLU -> Dropout -> ... -> Linear(out)`` with He (Kaiming) initialisation.

    ``out=None`` ends with the last hidden layer (a representation, not a score); ``out_bias=False``
    drops the final bias (useless before a softmax, which is shift-invariant).

    >>> import torch
    >>> MLP(5, [8, 4], out=1)(torch.zeros(3, 5)).shape
    torch.Size([3, 1])
    """

    def __init__(
        self, in_dim: int, hidden: Sequence[int], out: int | None = None, dropout: float = 0.0, out_bias: bool = True
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for h in hidden:
            lin = nn.Linear(width, h)
            nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")
            nn.init.zeros_(lin.bias)
            layers += [lin, nn.PReLU(1, init=0.1)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        if out is not None:
            head = nn.Linear(width, out, bias=out_bias)
            nn.init.xavier_uniform_(head.weight)
            if head.bias is not None:
                nn.init.zeros_(head.bias)
            layers.append(head)
            width = out
        self.out_dim = width
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
