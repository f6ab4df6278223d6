"""MiNet (Ouyang, Zhang, Zhao et al., "MiNet: Mixed Interest Network for Cross-Domain Click-Through
Rate Prediction", CIKM 2020): source domain = products, target domain = live channels."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from eliverec.config import ModelConfig
from eliverec.models.base import STATIC_FIELDS, Context, RankingModel
from eliverec.models.layers import MLP, masked_softmax

MAX_LOG_BETA = 5.0  # bound on the unnormalised interest weights (exp(5) ~ 148) so early steps stay finite


class MiNet(RankingModel):
    """Three interests of the user, fused by two levels of attention.

    - long-term interest across domains: the user embedding ``p_u`` (shared by both domains);
    - short-term interest per domain: item-level attention over that domain's recent behaviours,
      ``alpha_i = softmax_i(v^T ReLU(W [e_i, q, e_i * M q, p_u]))``, ``a_K = sum_i alpha_i e_i``, where
      ``q = e_vt`` is the target and ``M`` is MiNet's transfer matrix; the target domain uses ``M = I``
      (its items live in the target's space), the source (product) domain a learned ``M``;
    - interest-level attention: ``beta_j = exp(g_j^T ReLU(V_j [x_j, q, p_u]))`` per interest ``x_j``,
      not normalised across interests (an interest can be amplified or damped on its own), and the
      weighted interests are concatenated: ``[beta_1 p_u, beta_2 a_S, beta_3 a_V]``.

    The watch tower reads ``[e_c, e_vt, beta_1 p_u, beta_2 a_S, beta_3 a_V, e_d]``. Both attentions
    depend on the target, so all of it runs per candidate (``encode``).
    """

    name = "minet"
    dual = True

    def __init__(self, cfg: ModelConfig, vocab: Mapping[str, int], seq_len: int) -> None:
        super().__init__(cfg, vocab, seq_len)
        d = cfg.dim
        self.transfer = nn.Linear(d, d, bias=False)  # M, source domain only
        self.item_att = nn.ModuleDict({k: MLP(4 * d, [d], out=1, out_bias=False) for k in self.domains})
        self.interest_att = nn.ModuleList(MLP(3 * d, [d], out=1) for _ in range(3))
        self.finish([STATIC_FIELDS * d, d, d, d, d])

    def item_level(self, k: str, q: Tensor, user: Tensor, state: dict[str, Tensor]) -> Tensor:
        """``a_K`` (B, d): the target's attention over domain ``k``'s behaviours."""
        e, mask = state[f"{k}_e"], state[f"{k}_mask"]
        qm = self.transfer(q) if k == "product" else q
        L = e.shape[1]
        qe, ue = q.unsqueeze(1).expand(-1, L, -1), user.unsqueeze(1).expand(-1, L, -1)
        inp = torch.cat([qe, e, e * qm.unsqueeze(1), ue], -1)  # [e_i, q, e_i * M q, p_u] (order irrelevant)
        w = masked_softmax(self.item_att[k](inp).squeeze(-1), mask)  # alpha_i, (B, L)
        return torch.einsum("bl,bld->bd", w, e)

    def encode(
        self, x: Context, state: dict[str, Tensor], with_reg: bool
    ) -> tuple[list[Tensor], dict[str, Tensor], Tensor | None]:
        q, user = x.target, state["user"]
        interests = [user, self.item_level("product", q, user, state), self.item_level("live", q, user, state)]
        weighted = []
        for att, xj in zip(self.interest_att, interests, strict=True):
            beta = torch.exp(att(torch.cat([xj, q, user], -1)).clamp(max=MAX_LOG_BETA))  # (B, 1), unnormalised
            weighted.append(beta * xj)
        return [x.static, q, *weighted], {}, None
