"""DDTCDR+ (Li and Tuzhilin, "DDTCDR: Deep Dual Transfer Cross Domain Recommendation", WSDM 2020), with
the user's sequences as the user's general feature (the paper's "+", ``eliverec.models.plus``)."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from eliverec.config import ModelConfig
from eliverec.models.base import STATIC_FIELDS, Context
from eliverec.models.layers import OrthogonalMap
from eliverec.models.plus import SequencePlus


class DDTCDR(SequencePlus):
    """A latent orthogonal mapping ``X`` between the domains' user representations ``u_V``, ``u_S``
    (``u_K = MLP_K([e_u, s_K])``): ``X u_V`` transfers live to product and, ``X`` being orthogonal,
    ``X^T u_S`` transfers product back to live with the same matrix (DDTCDR's dual transfer). ``X`` is
    kept orthogonal by construction (``OrthogonalMap``: the exponential of a skew-symmetric matrix),
    not by a penalty. DDTCDR mixes a domain's own and the transferred user vector; here both go to the
    watch tower, ``[e_c, e_vt, u_V, X^T u_S, (u_V + X^T u_S) * e_vt, e_d]``, and the tower learns the
    mix. The product domain's own loss has no label here, so only the product-to-live direction is
    trained; all user vectors are candidate-independent (``user_state``).
    """

    name = "ddtcdr"
    domain_users = True

    def __init__(self, cfg: ModelConfig, vocab: Mapping[str, int], seq_len: int) -> None:
        super().__init__(cfg, vocab, seq_len)
        self.mapping = OrthogonalMap(cfg.dim)
        self.finish([STATIC_FIELDS * cfg.dim] + [cfg.dim] * 4)

    def user_state(self, seqs: dict[str, Tensor]) -> dict[str, Tensor]:
        state = super().user_state(seqs)
        state["transferred"] = self.mapping.inverse(state["product_user"])  # X^T u_S, in the live space
        return state

    def encode(
        self, x: Context, state: dict[str, Tensor], with_reg: bool
    ) -> tuple[list[Tensor], dict[str, Tensor], Tensor | None]:
        u, t = state["live_user"], state["transferred"]
        return [x.static, x.target, u, t, (u + t) * x.target], {}, None
