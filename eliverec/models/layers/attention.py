"""Masked softmax and target attention (DIN activation unit; multi-head scaled dot product)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from eliverec.models.layers.mlp import MLP


def masked_softmax(scores: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """Softmax over ``dim`` where ``mask`` is False gets exactly zero weight.

    A row that is all padding gets all-zero weights (never NaN).

    >>> w = masked_softmax(torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]]),
    ...                    torch.tensor([[True, False, True], [False, False, False]]))
    >>> [round(v, 3) for v in w[0].tolist()], w[1].tolist()
    ([0.119, 0.0, 0.881], [0.0, 0.0, 0.0])
    """
    scores = scores.masked_fill(~mask, float("-inf"))
    top = scores.amax(dim=dim, keepdim=True).clamp(min=-1e30)  # finite even for an all-padding row
    ex = torch.exp(scores - top) * mask
    return ex / ex.sum(dim=dim, keepdim=True).clamp(min=1e-12)


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over dim 1 of ``x`` (B, L, d) on real positions; zeros for an all-padding row.

    >>> masked_mean(torch.ones(1, 3, 2), torch.tensor([[False, True, True]])).tolist()
    [[1.0, 1.0]]
    """
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


def masked_max(x: Tensor, mask: Tensor) -> Tensor:
    """Max over dim 1 of ``x`` (B, L, d) on real positions; zeros for an all-padding row.

    >>> masked_max(torch.tensor([[[5.0], [1.0]]]), torch.tensor([[False, True]])).tolist()
    [[1.0]]
    """
    filled = x.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)
    return torch.where(mask.any(1, keepdim=True), filled, torch.zeros_like(filled))


class DinAttention(nn.Module):
    """DIN target attention: ``s_i = MLP([q, k_i, q - k_i, q * k_i])``, ``u = sum_i a_i v_i``.

    ``normalize=True``: ``a_i = softmax_i(s_i)`` over the real positions (a weighted mean: what
    eLiveRec's retrieval, eq. 6, needs). ``normalize=False``: DIN's own reading (Zhou et al. 2018,
    section 4.3: "normalization with softmax ... is abandoned" to keep the intensity of a user's
    interest): ``a_i = sigmoid(s_i)``, so ``u`` is a soft count of the behaviours relevant to the
    target (bounded by the sequence length; the sigmoid is our choice: the paper leaves the unit's
    output unbounded). On the bench world the unnormalised weights gave DIN dual +0.009 test AUC on
    seed 0 (one run each; runs of one setting differ by about 0.003). Padded positions get zero weight.

    >>> att = DinAttention(4, hidden=[8])
    >>> q, k = torch.randn(2, 4), torch.randn(2, 3, 4)
    >>> u, w = att(q, k, torch.tensor([[True, True, False], [False, False, False]]))
    >>> tuple(u.shape), float(w[0, 2].detach()), float(w[1].detach().abs().sum())
    ((2, 4), 0.0, 0.0)
    """

    def __init__(self, dim: int, hidden: list[int] | None = None, normalize: bool = True) -> None:
        super().__init__()
        self.score = MLP(4 * dim, hidden or [4 * dim, dim], out=1, out_bias=False)
        self.normalize = normalize

    def forward(self, q: Tensor, k: Tensor, mask: Tensor, v: Tensor | None = None) -> tuple[Tensor, Tensor]:
        qe = q.unsqueeze(1).expand_as(k)  # (B, L, d)
        s = self.score(torch.cat([qe, k, qe - k, qe * k], dim=-1)).squeeze(-1)  # (B, L)
        w = masked_softmax(s, mask) if self.normalize else torch.sigmoid(s) * mask
        return torch.einsum("bl,bld->bd", w, k if v is None else v), w


class MultiHeadTargetAttention(nn.Module):
    """Multi-head scaled dot-product target attention (eq. 4 with one query, the target item).

    ``head_j = softmax((q W_j^Q)(K W_j^K)^T / sqrt(d/h)) (V W_j^V)``, output ``concat(heads) W^O``.

    >>> att = MultiHeadTargetAttention(4, heads=2)
    >>> u, w = att(torch.randn(2, 4), torch.randn(2, 3, 4), torch.tensor([[True, False, True], [False] * 3]))
    >>> tuple(u.shape), float(w[0, :, 1].detach().abs().sum()), bool(torch.isfinite(u).all())
    ((2, 4), 0.0, True)
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be a multiple of heads {heads}")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.o = nn.Linear(dim, dim)

    def forward(self, q: Tensor, k: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        B, L, d = k.shape
        h, dh = self.heads, d // self.heads
        qh = self.q(q).view(B, h, 1, dh)
        kh, vh = self.kv(k).view(B, L, 2, h, dh).permute(2, 0, 3, 1, 4)  # (B, h, L, dh) each
        s = (qh @ kh.transpose(-1, -2)).squeeze(2) / math.sqrt(dh)  # (B, h, L)
        w = masked_softmax(s, mask.unsqueeze(1))
        u = (w.unsqueeze(2) @ vh).reshape(B, d)
        return self.o(u), w
