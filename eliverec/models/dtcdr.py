"""DTCDR+ (Zhu, Ge, Zhuang et al., "DTCDR: A Framework for Dual-Target Cross-Domain Recommendation",
CIKM 2019), with the user's sequences as the user's content (the paper's "+", ``eliverec.models.plus``)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from eliverec.config import ModelConfig
from eliverec.models.base import STATIC_FIELDS, Context
from eliverec.models.plus import SequencePlus


class DTCDR(SequencePlus):
    """Embedding sharing: each domain's user embedding ``u_K = MLP_K([e_u, s_K])`` and the shared user
    embedding ``u = combine(u_V, u_S)`` that both domains use. DTCDR compares three combination
    operators (concatenation, max pooling, average pooling); average pooling is used here (it keeps the
    width ``d`` and lets neither domain dominate). The live domain matches the shared user with the
    target (DTCDR's NeuMF-style user-item interaction): the watch tower reads
    ``[e_c, e_vt, u, u * e_vt, e_d]``. The shared embedding is candidate-independent (``user_state``).
    """

    name = "dtcdr"
    domain_users = True

    def __init__(self, cfg: ModelConfig, vocab: Mapping[str, int], seq_len: int) -> None:
        super().__init__(cfg, vocab, seq_len)
        self.finish([STATIC_FIELDS * cfg.dim, cfg.dim, cfg.dim, cfg.dim])

    def user_state(self, seqs: dict[str, Tensor]) -> dict[str, Tensor]:
        state = super().user_state(seqs)
        state["shared_user"] = torch.stack([state[f"{k}_user"] for k in self.domains]).mean(0)  # average pooling
        return state

    def encode(
        self, x: Context, state: dict[str, Tensor], with_reg: bool
    ) -> tuple[list[Tensor], dict[str, Tensor], Tensor | None]:
        u = state["shared_user"]
        return [x.static, x.target, u, u * x.target], {}, None
