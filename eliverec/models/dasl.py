"""DASL (Li and Tuzhilin, "Dual Attentive Sequential Learning for Cross-Domain Click-Through Rate
Prediction", KDD 2021): dual embedding and dual attention over the live and product sequences."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from eliverec.config import ModelConfig
from eliverec.models.base import STATIC_FIELDS, Context
from eliverec.models.layers import MultiHeadTargetAttention, OrthogonalMap
from eliverec.models.plus import SequencePlus


class DASL(SequencePlus):
    """Dual embedding: each domain's user embedding ``u_K = MLP_K([e_u, s_K])`` (``s_K`` the
    self-attentive sequence encoding of ``eliverec.models.plus``) is completed by the other domain's,
    through a latent orthogonal mapping ``X`` (DASL builds on DDTCDR's dual transfer):
    ``~u_V = u_V + X^T u_S``, ``~u_S = u_S + X u_V`` (candidate-independent, ``user_state``).

    Dual attention: the target attends over both sequences, in each domain's own space: over the live
    sequence with ``q_V = e_vt`` and over the product sequence with the target mapped across,
    ``q_S = X e_vt`` (DASL's cross-domain attention; multi-head, as ``model.heads``):
    ``a_K = MHTA(q_K, E_K)``. The watch tower reads ``[e_c, e_vt, ~u_V, ~u_S, a_V, a_S, e_d]``.
    DASL's second domain's loss has no label here; its parts learn through the live loss.
    """

    name = "dasl"
    domain_users = True

    def __init__(self, cfg: ModelConfig, vocab: Mapping[str, int], seq_len: int) -> None:
        super().__init__(cfg, vocab, seq_len)
        self.mapping = OrthogonalMap(cfg.dim)
        self.att = nn.ModuleDict({k: MultiHeadTargetAttention(cfg.dim, cfg.heads) for k in self.domains})
        self.finish([STATIC_FIELDS * cfg.dim] + [cfg.dim] * 5)

    def user_state(self, seqs: dict[str, Tensor]) -> dict[str, Tensor]:
        state = super().user_state(seqs)
        u_v, u_s = state["live_user"], state["product_user"]
        state["live_dual"] = u_v + self.mapping.inverse(u_s)  # ~u_V = u_V + X^T u_S
        state["product_dual"] = u_s + self.mapping(u_v)  # ~u_S = u_S + X u_V
        return state

    def encode(
        self, x: Context, state: dict[str, Tensor], with_reg: bool
    ) -> tuple[list[Tensor], dict[str, Tensor], Tensor | None]:
        queries = {"live": x.target, "product": self.mapping(x.target)}
        att = [self.att[k](queries[k], state[f"{k}_e"], state[f"{k}_mask"])[0] for k in self.domains]
        return [x.static, x.target, state["live_dual"], state["product_dual"], *att], {}, None
