"""Recurrent layers for DIEN: a masked GRU interest extractor and AUGRU interest evolution."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class MaskedGRU(nn.Module):
    """GRU over a left-padded sequence; the state stays at zero through the padding.

    ``h_t = GRU(x_t, h_{t-1})`` where ``mask_t``, else ``h_t = h_{t-1}``; outputs at padded steps are 0.

    >>> gru = MaskedGRU(3)
    >>> out = gru(torch.randn(2, 4, 3), torch.tensor([[False, False, True, True], [False] * 4]))
    >>> tuple(out.shape), float(out[0, :2].abs().sum()), float(out[1].abs().sum())
    ((2, 4, 3), 0.0, 0.0)
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.cell = nn.GRUCell(dim, dim)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = x.new_zeros(x.shape[0], x.shape[2])
        outs = []
        for t in range(x.shape[1]):
            m = mask[:, t : t + 1]
            h = torch.where(m, self.cell(x[:, t], h), h)
            outs.append(h * m)
        return torch.stack(outs, dim=1)


class AUGRU(nn.Module):
    """GRU with attentional update gate (DIEN): ``u'_t = a_t * u_t``, ``h_t = (1 - u'_t) h_{t-1} + u'_t h~_t``.

    Padded steps have ``a_t = 0`` and so leave the state unchanged; returns the final state (B, d).

    >>> augru = AUGRU(3)
    >>> h = augru(torch.randn(2, 4, 3), torch.tensor([[0.0, 0.5, 0.5, 0.0], [0.0] * 4]))
    >>> tuple(h.shape), float(h[1].abs().sum())
    ((2, 3), 0.0)
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.x2h = nn.Linear(dim, 3 * dim)
        self.h2h = nn.Linear(dim, 3 * dim)

    def forward(self, x: Tensor, att: Tensor) -> Tensor:
        h = x.new_zeros(x.shape[0], x.shape[2])
        gx = self.x2h(x)  # (B, L, 3d), all steps at once
        for t in range(x.shape[1]):
            xr, xu, xn = gx[:, t].chunk(3, dim=-1)
            hr, hu, hn = self.h2h(h).chunk(3, dim=-1)
            r = torch.sigmoid(xr + hr)
            u = torch.sigmoid(xu + hu) * att[:, t : t + 1]
            n = torch.tanh(xn + r * hn)
            h = (1 - u) * h + u * n
        return h
