"""Co-action unit of CAN (Bian et al., "CAN: Feature Co-Action Network for Click-Through Rate
Prediction", WSDM 2022; arXiv 2011.05625 "CAN: Revisiting Feature Co-Action for CTR Prediction")."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

#: (in, out) of each micro-MLP layer: the released code's ``weight_emb_w = [[16, 8], [8, 4]]``, no biases
CAN_LAYERS: tuple[tuple[int, int], ...] = ((16, 8), (8, 4))
CAN_ORDERS = 3  # the released code's ``orders = 3``, one weight set shared by all orders


class CoActionUnit(nn.Module):
    """A micro-MLP per candidate whose weights are the candidate's own parameters ``P_induction``.

    ``P_induction`` (B, P) is split and reshaped into ``W_1 (16 x 8)``, ``W_2 (8 x 4)``; each behaviour's
    feed-side vector ``p`` (16) goes through ``h_k = tanh(h_{k-1} W_k)`` for the orders ``p, p^2, p^3``
    (element-wise powers, the multi-order enhancement); the layer outputs are concatenated and summed over
    orders and over the real behaviours: output (B, 8 + 4).

    >>> unit = CoActionUnit()
    >>> p_ind, feed = torch.randn(2, unit.param_dim), torch.randn(2, 5, 16)
    >>> out = unit(p_ind, feed, torch.tensor([[True] * 5, [False] * 5]))
    >>> unit.param_dim, tuple(out.shape), float(out[1].abs().sum())
    (160, (2, 12), 0.0)
    """

    def __init__(self, layers: Sequence[tuple[int, int]] = CAN_LAYERS, orders: int = CAN_ORDERS) -> None:
        super().__init__()
        self.layers, self.orders = tuple(layers), orders
        self.feed_dim = self.layers[0][0]
        self.param_dim = sum(i * o for i, o in self.layers)
        self.out_dim = sum(o for _, o in self.layers)

    def weights(self, induction: Tensor) -> list[Tensor]:
        """``P_induction`` (B, P) -> the micro-MLP's weight matrices, each (B, in, out)."""
        sizes = [i * o for i, o in self.layers]
        return [w.reshape(-1, i, o) for w, (i, o) in zip(induction.split(sizes, -1), self.layers, strict=True)]

    def forward(self, induction: Tensor, feed: Tensor, mask: Tensor) -> Tensor:
        """``induction`` (B, P), ``feed`` (B, L, feed_dim), ``mask`` (B, L) -> (B, out_dim)."""
        ws = self.weights(induction)
        out = feed.new_zeros(*feed.shape[:2], self.out_dim)
        for c in range(1, self.orders + 1):
            h, parts = feed**c, []
            for w in ws:
                h = torch.tanh(h @ w)  # (B, L, out): one micro-MLP layer per candidate
                parts.append(h)
            out = out + torch.cat(parts, dim=-1)
        return (out * mask.unsqueeze(-1).to(out.dtype)).sum(1)
