"""Multi-field item embedding (paper section IV-A)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn


class EmbeddingBank(nn.Module):
    """One table per hashed vocabulary, shared by every place that uses it.

    An item of several fields is the sum of its field embeddings (section IV-A):
    ``e = sum_f E_f[x_f]`` (channel: id + anchor + category; product: id + category + brand).
    Index 0 is padding and embeds to zero. The category table is shared by both domains, so a
    product and a channel of the same category are close from the first step. Tables start at
    ``N(0, std^2)``: much larger than the 1e-4 of CTR libraries, so that identical ids already give
    large dot products and target attention sees the planted sequence signal at once.

    >>> bank = EmbeddingBank({"channel": 10, "anchor": 5, "category": 4}, dim=6, std=0.3)
    >>> ids = torch.tensor([[[3, 2, 1], [0, 0, 0]]])          # (B=1, L=2, fields=3), second is padding
    >>> e = bank.item(ids, ("channel", "anchor", "category"))
    >>> tuple(e.shape), float(e[0, 1].abs().sum())
    ((1, 2, 6), 0.0)
    """

    def __init__(self, vocab: Mapping[str, int], dim: int, std: float) -> None:
        super().__init__()
        self.dim = dim
        self.tables = nn.ModuleDict({k: nn.Embedding(max(int(n), 2), dim, padding_idx=0) for k, n in vocab.items()})
        for table in self.tables.values():
            nn.init.normal_(table.weight, std=std)
            with torch.no_grad():
                table.weight[0].zero_()

    def field(self, ids: torch.Tensor, name: str) -> torch.Tensor:
        """Embed one field: ``(...,) -> (..., d)``."""
        if name not in self.tables:
            raise KeyError(f"no embedding table '{name}' (known: {sorted(self.tables)})")
        return self.tables[name](ids)

    def fields(self, ids: torch.Tensor, names: Sequence[str]) -> torch.Tensor:
        """Embed each field separately: ``(..., F) -> (..., F, d)``."""
        return torch.stack([self.field(ids[..., i], n) for i, n in enumerate(names)], dim=-2)

    def item(self, ids: torch.Tensor, names: Sequence[str]) -> torch.Tensor:
        """Multi-field item embedding ``sum_f E_f[x_f]``: ``(..., F) -> (..., d)``."""
        out = self.field(ids[..., 0], names[0])
        for i, n in enumerate(names[1:], start=1):
            out = out + self.field(ids[..., i], n)
        return out
