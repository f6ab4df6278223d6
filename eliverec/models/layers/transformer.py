"""Transformer encoder block (paper eq. 3-4) with a key padding mask."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from eliverec.models.layers.attention import masked_softmax


class TransformerBlock(nn.Module):
    """One post-norm Transformer encoder layer over a left-padded sequence.

    Eq. 3: ``H^l = FFN(Concat(head_1..head_h) W^h)``, ``head_i = Attention(H W_i^Q, H W_i^K, H W_i^V)``;
    eq. 4: ``Attention(Q, K, V) = softmax(Q K^T / sqrt(d_h)) V`` (per-head scale). Residual connections
    and layer norm (omitted in the paper's formula) are kept. Keys that are padding get zero weight;
    padded query rows are returned as zeros, so an all-padding sequence gives zeros, not NaN.

    >>> blk = TransformerBlock(4, heads=2)
    >>> h = blk(torch.randn(2, 3, 4), torch.tensor([[False, True, True], [False, False, False]]))
    >>> tuple(h.shape), float(h[0, 0].abs().sum()), float(h[1].abs().sum())
    ((2, 3, 4), 0.0, 0.0)
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, ffn_mult: int = 2) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be a multiple of heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.wh = nn.Linear(dim, dim)  # W^h
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_mult * dim), nn.GELU(), nn.Linear(ffn_mult * dim, dim))
        self.norm2 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def attention(self, h: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Multi-head self-attention; returns the output (B, L, d) and the weights (B, heads, L, L)."""
        B, L, d = h.shape
        nh, dh = self.heads, d // self.heads
        q, k, v = self.qkv(h).view(B, L, 3, nh, dh).permute(2, 0, 3, 1, 4)  # (B, nh, L, dh) each
        scores = q @ k.transpose(-1, -2) / math.sqrt(dh)  # eq. 4, (B, nh, L, L)
        w = masked_softmax(scores, mask[:, None, None, :])
        out = (w @ v).transpose(1, 2).reshape(B, L, d)
        return self.wh(out), w

    def fused_attention(self, h: Tensor, mask: Tensor) -> Tensor:
        """The same attention as :meth:`attention` through torch's fused kernel (no weights kept).

        A sequence with no real event attends to every position instead of none (a softmax over
        nothing is NaN); its rows are zeroed in :meth:`forward`, so the output is the same.
        """
        B, L, d = h.shape
        nh, dh = self.heads, d // self.heads
        q, k, v = self.qkv(h).view(B, L, 3, nh, dh).permute(2, 0, 3, 1, 4)  # (B, nh, L, dh) each
        keys = mask | ~mask.any(dim=1, keepdim=True)  # (B, L)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keys[:, None, None, :])  # eq. 4
        return self.wh(out.transpose(1, 2).reshape(B, L, d))

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        att = self.fused_attention(h, mask)
        h = self.norm1(h + self.drop(att))
        h = self.norm2(h + self.drop(self.ffn(h)))
        return h * mask.unsqueeze(-1).to(h.dtype)


class SequenceTransformer(nn.Module):
    """Learnable positions (recency, counted from the most recent event) plus ``layers`` blocks.

    >>> enc = SequenceTransformer(4, heads=2, layers=2, max_len=5)
    >>> enc(torch.randn(1, 5, 4), torch.ones(1, 5, dtype=torch.bool)).shape
    torch.Size([1, 5, 4])
    """

    def __init__(self, dim: int, heads: int, layers: int, max_len: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.randn(max_len, dim) * 0.02)
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, dropout) for _ in range(layers))

    def forward(self, e: Tensor, mask: Tensor, user: Tensor | None = None) -> Tensor:
        """``e`` (B, L, d) left-padded, ``mask`` (B, L) True on real events -> ``H`` (B, L, d)."""
        L = e.shape[1]
        h = e + self.pos[-L:]  # left padding: the last row is always the most recent event
        for blk in self.blocks:
            h = blk(h, mask)
        return h
