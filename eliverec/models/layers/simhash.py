"""SimHash retrieval of the top-k behaviours closest to the target (ETA, Chen et al. 2021)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class SimHashTopK(nn.Module):
    """Locality-sensitive hashing with fixed random hyperplanes ``R`` (d x m).

    ``sig(x) = sign(x R)``; the distance of behaviour ``i`` to the target is the Hamming distance of
    their signatures; the ``k`` nearest real behaviours are kept (ties: the more recent first).
    Hashing is not differentiable and uses detached embeddings; the gathered embeddings keep gradients.

    >>> torch.manual_seed(0) is not None
    True
    >>> sh = SimHashTopK(dim=8, bits=64, k=2)
    >>> seq = torch.randn(1, 5, 8)
    >>> mask = torch.tensor([[True, True, True, True, False]])
    >>> idx, keep = sh(seq[:, 1], seq, mask)      # the target equals behaviour 1
    >>> int(idx[0, 0]), keep.tolist()
    (1, [[True, True]])
    """

    def __init__(self, dim: int, bits: int, k: int) -> None:
        super().__init__()
        self.k = k
        self.register_buffer("planes", torch.randn(dim, bits))

    def signature(self, x: Tensor) -> Tensor:
        """Binary codes ``(..., d) -> (..., m)`` in {0, 1}."""
        return (x.detach() @ self.planes > 0).to(torch.int8)

    def forward(self, target: Tensor, seq: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Indices (B, k) of the nearest behaviours and whether each kept slot is a real event."""
        L = seq.shape[1]
        k = min(self.k, L)
        ham = (self.signature(seq) != self.signature(target).unsqueeze(1)).sum(-1).float()  # (B, L)
        recency = torch.arange(L, device=seq.device).float() / (2 * L)  # < 0.5: breaks ties only
        dist = (ham - recency).masked_fill(~mask, float("inf"))
        idx = dist.topk(k, dim=1, largest=False).indices
        return idx, mask.gather(1, idx)
