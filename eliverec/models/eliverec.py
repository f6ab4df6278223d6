"""eLiveRec (paper section IV): disentangled cross-domain intents + adaptive multi-task heads.

Per domain K in {V (live), S (product)}: basic sequence encoder ``H_K`` (eq. 3-4, or DIN / HGN
style, Fig. 5), intention weights against pooled prototypes (eq. 5), target retrieval (eq. 6-7)
into ``z_cK`` and ``z_sK``, distance correlation between them (eq. 8), InfoNCE between ``z_cV``
and ``z_cS`` (eq. 9), all weighted into ``reg`` (eq. 10). The watch tower reads
``[e_c, e_vt, z_cV, z_sV, z_cS, z_sS, e_d, position]`` (eq. 11; ``e_d`` is added because the
channel's real-time heat drives watching too). The inter-channel module gates each feature by the
dynamic context (eq. 12) and feeds ``[gated F, e_d]`` to MMoE heads (eq. 13).

Candidate-independent parts (``user_state``: ``H_K``, prototypes, intention weights ``p(z_c|v_i)``)
are computed once per request by ``RankingModel.score`` and stay one row (``reads_shared_state``); only
eq. 6-7 (:func:`retrieve_shared`: ``z`` once, the sums as matrix products) and the towers run per candidate.

Options beyond the paper (``benchmarks/results/mechanism.md`` measures them against the world's truth):

- ``model.prototypes: cross``: ``o_cK = mean-pool(E_K')`` of the *other* domain ``K'`` and ``o_sK =
  mean-pool(E_K)`` of its own, so eq. 5 scores how much more an event resembles the other domain's
  behaviour than its own domain's. With the paper's prototypes (both pooled from ``E_K``) ``z_cK`` is a
  function of one domain's sequence and the target, which cannot tell a consistent category (active in
  both domains) from a domain-specific one: that is a cross-domain property.
- ``model.reg_on: pooled``: eq. 8-9 act on target-free user parts ``mean_i p_i h_i`` and
  ``mean_i (1 - p_i) h_i`` instead of the retrieved ``z`` of eq. 7, whose shared target query lets
  InfoNCE match ``z_cV`` and ``z_cS`` through the candidate rather than the user.
- ``model.nce_negatives: batch_specific``: eq. 9 also counts the row's own ``z_sS`` and ``z_sV`` as
  negatives of ``z_cV`` (the consistent parts must be closer to each other than to the specific ones).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from eliverec.config import ConfigError, ModelConfig
from eliverec.models.base import STATIC_FIELDS, Context, RankingModel
from eliverec.models.layers import (
    DinAttention,
    GateUnit,
    HGNEncoder,
    SequenceTransformer,
    cosine_distance,
    distance_correlation,
    euclidean_distance,
    info_nce,
    masked_max,
    masked_mean,
    masked_softmax,
)


def make_backbone(cfg: ModelConfig, seq_len: int) -> nn.Module:
    """Basic sequence encoder ``E -> H`` (Fig. 5): transformer (eLive-BST), DIN (identity; the
    DIN activation unit then does the retrieval) or HGN gating."""
    if cfg.backbone == "transformer":
        return SequenceTransformer(cfg.dim, cfg.heads, cfg.layers, seq_len, cfg.dropout)
    if cfg.backbone == "hgn":
        return HGNEncoder(cfg.dim, seq_len)
    return _Identity()


class _Identity(nn.Module):
    def forward(self, e: Tensor, mask: Tensor, user: Tensor | None = None) -> Tensor:
        return e * mask.unsqueeze(-1).to(e.dtype)


def intention_weights(h: Tensor, o_c: Tensor, o_s: Tensor, mask: Tensor) -> Tensor:
    """Eq. 5: ``p(z_c|v_i) = exp(h.o_c / sqrt d) / (exp(h.o_c / sqrt d) + exp(h.o_s / sqrt d))``; 0 on padding.

    >>> h = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    >>> p = intention_weights(h, torch.tensor([[4.0, 0.0]]), torch.tensor([[0.0, 4.0]]), torch.ones(1, 2).bool())
    >>> [round(v, 2) for v in p[0].tolist()]          # sigmoid((4 - 0) / sqrt(2)) and its complement
    [0.94, 0.06]
    """
    scale = math.sqrt(h.shape[-1])
    lc = (h * o_c.unsqueeze(1)).sum(-1) / scale
    ls = (h * o_s.unsqueeze(1)).sum(-1) / scale
    return torch.sigmoid(lc - ls) * mask.to(h.dtype)  # two-way softmax


def retrieve(query: Tensor, h: Tensor, p: Tensor, mask: Tensor) -> Tensor:
    """Eq. 6-7: ``z = sum_i softmax_i(q . (p_i h_i) / sqrt d) p_i h_i`` (padding gets weight 0).

    >>> h = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    >>> retrieve(torch.tensor([[0.0, 50.0]]), h, torch.ones(1, 2), torch.tensor([[True, True]])).round().tolist()
    [[0.0, 1.0]]
    """
    z = p.unsqueeze(-1) * h  # z_{c, v_i}, (B, L, d)
    a = masked_softmax((z @ query.unsqueeze(-1)).squeeze(-1) / math.sqrt(h.shape[-1]), mask)  # eq. 6
    return torch.einsum("bl,bld->bd", a, z)  # eq. 7


def retrieve_shared(query: Tensor, h: Tensor, p: Tensor, mask: Tensor) -> Tensor:
    """Eq. 6-7 for many candidates against one user's state: ``query`` (B, d), ``h`` (1, L, d), ``p``, ``mask`` (1, L).

    The serving form of :func:`retrieve` (``RankingModel.score`` of one request): ``z = p h`` is built
    once instead of once per candidate and the two sums over the sequence are matrix products; equal to
    :func:`retrieve` on the state repeated for every row up to float rounding.

    >>> q, h, p = torch.randn(5, 4), torch.randn(1, 3, 4), torch.rand(1, 3)
    >>> m = torch.tensor([[False, True, True]])
    >>> full = retrieve(q, h.expand(5, -1, -1), p.expand(5, -1), m.expand(5, -1))
    >>> bool(torch.allclose(retrieve_shared(q, h, p, m), full, atol=1e-6))
    True
    """
    z = (p.unsqueeze(-1) * h)[0]  # z_{c, v_i}, (L, d): candidate-independent
    a = masked_softmax((query @ z.T) / math.sqrt(h.shape[-1]), mask)  # eq. 6, (B, L)
    return a @ z  # eq. 7


def prototypes(cfg: ModelConfig, seqs: dict[str, Tensor], dom: str, other: str) -> tuple[Tensor, Tensor]:
    """Eq. 5 prototypes ``(o_c, o_s)`` of domain ``dom`` from the embedded sequences (not ``learned``).

    ``pooled`` (the paper): mean- and max-pool of ``E_dom``; ``cross``: mean-pool of ``E_other`` and
    of ``E_dom`` (an empty sequence pools to zeros).

    >>> e = {"a_e": torch.ones(1, 2, 3), "a_mask": torch.ones(1, 2).bool(), "b_e": torch.zeros(1, 1, 3),
    ...      "b_mask": torch.ones(1, 1).bool()}
    >>> [o.tolist() for o in prototypes(ModelConfig.model_construct(prototypes="cross"), e, "a", "b")]
    [[[0.0, 0.0, 0.0]], [[1.0, 1.0, 1.0]]]
    """
    e, mask = seqs[f"{dom}_e"], seqs[f"{dom}_mask"]
    if cfg.prototypes == "cross":
        return masked_mean(seqs[f"{other}_e"], seqs[f"{other}_mask"]), masked_mean(e, mask)
    return masked_mean(e, mask), masked_max(e, mask)


def pooled_parts(h: Tensor, p: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Target-free parts ``(mean_i p_i h_i, mean_i (1 - p_i) h_i)`` over real events (``reg_on: pooled``).

    >>> c, s = pooled_parts(torch.ones(1, 2, 1), torch.tensor([[1.0, 0.0]]), torch.ones(1, 2).bool())
    >>> c.tolist(), s.tolist()
    ([[0.5]], [[0.5]])
    """
    m = mask.to(h.dtype)
    n = m.sum(1, keepdim=True).clamp(min=1.0)
    return ((p * m).unsqueeze(-1) * h).sum(1) / n, (((1 - p) * m).unsqueeze(-1) * h).sum(1) / n


class ELiveRec(RankingModel):
    """The full model; ablations and backbone come from ``ModelConfig`` (see ``eliverec.models``)."""

    name = "eliverec"
    dual = True
    reads_shared_state = True  # one request's user state stays one row; eq. 6-7 broadcast it (retrieve_shared)

    def __init__(self, cfg: ModelConfig, vocab: dict[str, int], seq_len: int) -> None:
        super().__init__(cfg, vocab, seq_len)
        d = cfg.dim
        self.backbones = nn.ModuleDict({k: make_backbone(cfg, seq_len) for k in self.domains})
        # W^Q of the retrieval (eq. 6 "similar to eq. 4"), identity at start so e_vt . z is the paper's form
        self.query = nn.ModuleDict({k: nn.Linear(d, d, bias=False) for k in self.domains})
        for lin in self.query.values():
            nn.init.eye_(lin.weight)
        if cfg.backbone == "din":  # DIN activation unit replaces the dot product of eq. 6
            self.din = nn.ModuleDict({f"{k}_{i}": DinAttention(d) for k in self.domains for i in "cs"})
        if cfg.prototypes == "learned":  # wo.P: Gaussian learnable prototypes (domain, {c, s}, d)
            self.protos = nn.Parameter(torch.randn(len(self.domains), 2, d) * cfg.emb_std)
        if cfg.prototypes == "cross" and len(self.domains) < 2:
            raise ConfigError("model.prototypes=cross needs both domains (a dual model)")
        n_z = 2 * len(self.domains) if cfg.disentangle else len(self.domains)
        feature_dims = [STATIC_FIELDS * d, d] + [d] * n_z
        self.gate = GateUnit(2 * d, feature_dims, hidden=d)  # eq. 12
        self.finish(feature_dims)

    def inter_dim(self) -> int:
        return sum(self.dims)  # gated features + e_d

    def inter(self, parts: tuple[Tensor, ...]) -> Tensor:
        gated, _ = self.gate(list(parts[:-1]), parts[-1])  # eq. 12: F_i * w_i, w_i from e_d
        return torch.cat([gated, parts[-1]], dim=-1)  # inter-channel embedding

    def user_state(self, seqs: dict[str, Tensor]) -> dict[str, Tensor]:
        state = dict(seqs)
        for i, dom in enumerate(self.domains):
            e, mask = seqs[f"{dom}_e"], seqs[f"{dom}_mask"]
            h = self.backbones[dom](e, mask, seqs["user"])  # eq. 3-4
            state[f"{dom}_h"] = h
            if self.cfg.disentangle:
                if self.cfg.prototypes == "learned":
                    o_c, o_s = (self.protos[i, j].expand(e.shape[0], -1) for j in range(2))
                else:  # pooled: o_c = mean-pool(E), o_s = max-pool(E); cross: see the module docstring
                    o_c, o_s = prototypes(self.cfg, seqs, dom, self.domains[1 - i])
                state[f"{dom}_pc"] = intention_weights(h, o_c, o_s, mask)  # eq. 5
        return state

    def _z(self, dom: str, intent: str, q: Tensor, h: Tensor, p: Tensor, mask: Tensor) -> Tensor:
        """Eq. 6-7 for the candidates ``q``; ``h``, ``p``, ``mask`` have one row when the user state is shared."""
        shared = h.shape[0] != q.shape[0]  # run(share_user=True): one user's state for every candidate
        if self.cfg.backbone != "din":
            return retrieve_shared(q, h, p, mask) if shared else retrieve(q, h, p, mask)
        z = p.unsqueeze(-1) * h
        if shared:
            z, mask = z.expand(q.shape[0], -1, -1), mask.expand(q.shape[0], -1)
        return self.din[f"{dom}_{intent}"](q, z, mask)[0]

    def encode(
        self, x: Context, state: dict[str, Tensor], with_reg: bool
    ) -> tuple[list[Tensor], dict[str, Tensor], Tensor | None]:
        zs: dict[str, Tensor] = {}
        for dom in self.domains:
            h, mask, q = state[f"{dom}_h"], state[f"{dom}_mask"], self.query[dom](x.target)
            if self.cfg.disentangle:
                pc = state[f"{dom}_pc"]
                zs[f"c_{dom}"] = self._z(dom, "c", q, h, pc, mask)  # eq. 6-7
                zs[f"s_{dom}"] = self._z(dom, "s", q, h, (1 - pc) * mask, mask)
            else:  # wo.D: plain target attention over H
                zs[f"all_{dom}"] = self._z(dom, "c", q, h, mask.to(h.dtype), mask)
        feats = [x.static, x.target, *zs.values()]
        if not (with_reg and self.cfg.disentangle):
            return feats, {}, None
        return (feats, *self.regularise(zs, x.users, state))

    def reg_parts(self, zs: dict[str, Tensor], state: dict[str, Tensor]) -> dict[str, Tensor]:
        """The parts eq. 8-9 act on: the retrieved ``z`` (eq. 7) or the target-free pools (``reg_on``)."""
        if self.cfg.reg_on == "retrieved":
            return zs
        out = {}
        for dom in self.domains:
            out[f"c_{dom}"], out[f"s_{dom}"] = pooled_parts(state[f"{dom}_h"], state[f"{dom}_pc"], state[f"{dom}_mask"])
        return out

    def regularise(self, zs: dict[str, Tensor], users: Tensor, state: dict[str, Tensor]) -> tuple[dict, Tensor]:
        """Eq. 8-10 and the SR variant; returns the unweighted terms and the weighted sum."""
        cfg, regs = self.cfg, {}
        zs = self.reg_parts(zs, state)
        total = zs["c_live"].new_zeros(())
        if cfg.dcor:
            for dom in self.domains:  # eq. 8, per domain over the batch
                regs[f"dcor_{dom}"] = distance_correlation(zs[f"c_{dom}"], zs[f"s_{dom}"])
                total = total + cfg.lambda1 * regs[f"dcor_{dom}"]
        if self.dual and cfg.consistency != "none":
            valid = (state["live_mask"].any(1) & state["product_mask"].any(1)).float()
            a, b = zs["c_live"], zs["c_product"]
            if cfg.consistency == "infonce":  # eq. 9; rows of the same user are not negatives
                hard = None  # batch_specific: the row's own specific parts are negatives too
                if cfg.nce_negatives == "batch_specific":
                    hard = torch.stack([zs["s_product"], zs["s_live"]], 1)
                regs["infonce"] = info_nce(a, b, cfg.tau, users.unsqueeze(0) == users.unsqueeze(1), valid, hard)
            elif cfg.consistency == "cos":
                regs["cos"] = cosine_distance(a, b, valid)
            else:
                regs["euc"] = euclidean_distance(a, b, valid)
            total = total + cfg.lambda2 * regs[cfg.consistency]
        if self.dual and cfg.specific_reg:  # SR: minimise dependence between the specific parts
            regs["sr"] = distance_correlation(zs["s_live"], zs["s_product"])
            total = total + cfg.lambda_sr * regs["sr"]
        return regs, total  # eq. 10
