"""CoNet+ (Hu, Zhang and Yang, "CoNet: Collaborative Cross Networks for Cross-Domain Recommendation",
CIKM 2018), with the user's sequences as a feature (the paper's "+", ``eliverec.models.plus``)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from eliverec.config import ModelConfig
from eliverec.models.base import STATIC_FIELDS, Context
from eliverec.models.plus import SequencePlus

OTHER = {"live": "product", "product": "live"}


class CoNet(SequencePlus):
    """Two base networks, one per domain, joined by cross connections (CoNet's cross unit):

    ``a_V^{l+1} = ReLU(W_V^l a_V^l + H^l a_S^l)``, ``a_S^{l+1} = ReLU(W_S^l a_S^l + H^l a_V^l)`` with
    the transfer matrix ``H^l`` shared by both directions (CoNet's dual transfer). Inputs
    ``a_K^0 = [e_u, e_vt, s_K]``: CoNet feeds each base network the user and the item; here the one
    candidate is the live channel, so both towers see it, and each sees its own domain's sequence
    feature ``s_K``. Widths ``3d -> 2d -> d`` (CoNet leaves them open; a halving pyramid as in its
    experiments). The watch tower reads ``[e_c, e_vt, a_V^L, a_S^L, e_d]``. CoNet's second loss (the
    source domain's own ratings) has no label here: the product tower learns through the cross units.
    """

    name = "conet"

    def __init__(self, cfg: ModelConfig, vocab: Mapping[str, int], seq_len: int) -> None:
        super().__init__(cfg, vocab, seq_len)
        d = cfg.dim
        sizes = list(zip([3 * d, 2 * d], [2 * d, d], strict=True))
        self.own = nn.ModuleDict({k: nn.ModuleList(nn.Linear(i, o) for i, o in sizes) for k in self.domains})
        self.cross = nn.ModuleList(nn.Linear(i, o, bias=False) for i, o in sizes)  # H^l, shared
        self.finish([STATIC_FIELDS * d, d, d, d])

    def encode(
        self, x: Context, state: dict[str, Tensor], with_reg: bool
    ) -> tuple[list[Tensor], dict[str, Tensor], Tensor | None]:
        a = {k: torch.cat([state["user"], x.target, state[f"{k}_seq"]], -1) for k in self.domains}
        for layer, h in enumerate(self.cross):
            a = {k: torch.relu(self.own[k][layer](a[k]) + h(a[OTHER[k]])) for k in self.domains}  # cross unit
        return [x.static, x.target, a["live"], a["product"]], {}, None
