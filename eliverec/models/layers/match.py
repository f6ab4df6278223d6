"""Explicit user-candidate match counts: the cross features a recsys engineer writes first.

Computed from the batch contract itself (``eliverec/features/batch.py``), so training, offline
scoring and serving see the same values without a feature-store change: for the candidate channel,
how many of the user's recent live watches share its category, anchor or channel (count, share of
the sequence, and whether the latest one does), how many of the user's recent product clicks share
its category (count, share, latest), what share of the product clicks fall in a category the
channel has on sale, and the two sequence lengths.

These are not part of the paper's models: a network can learn them from the sequences through
target attention, but the paper tables show the networks do not reach what gradient-boosted trees
get from them (``eliverec/evaluation/reference.py`` uses the same function). ``model.match_features``
adds them, log-scaled, to the dynamic context every model's tower reads (``models/base.py``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

#: Column names of :func:`match_counts`, in order.
MATCH_FEATURES: tuple[str, ...] = (
    "live_category_n", "live_category_share", "live_anchor_n", "live_channel_n", "live_last_category",
    "product_category_n", "product_category_share", "product_on_sale_share", "product_last_category",
    "live_len", "product_len",
)  # fmt: skip
#: Batch keys :func:`match_counts` reads.
MATCH_KEYS: tuple[str, ...] = ("channel", "channel_seq", "channel_len", "product_seq", "product_len", "dynamic_cats")
#: Columns that are counts (log1p-scaled by :func:`match_inputs`); the rest are shares and flags in [0, 1].
COUNT_COLUMNS: tuple[int, ...] = (0, 2, 3, 5, 9, 10)


def _matches(seq: Tensor, target: Tensor) -> Tensor:
    """(B, L) bool: real (non-pad) sequence events equal to the row's target id."""
    return (seq == target.unsqueeze(1)) & (seq > 0)


def match_counts(batch: Mapping[str, Tensor]) -> Tensor:
    """(B, len(MATCH_FEATURES)) float32 raw match counts, shares and flags of a batch.

    Channel fields are (channel, anchor, category), product fields (product, category, brand);
    sequences are left-padded with 0, so the latest event is the last column.

    >>> b = {"channel": torch.tensor([[5, 7, 2]]), "channel_seq": torch.tensor([[[0, 0, 0], [5, 7, 2], [6, 8, 2]]]),
    ...      "channel_len": torch.tensor([2]), "product_seq": torch.tensor([[[1, 2, 9], [1, 3, 9], [0, 0, 0]]]),
    ...      "product_len": torch.tensor([2]), "dynamic_cats": torch.tensor([[3, 0]])}
    >>> dict(zip(MATCH_FEATURES, match_counts(b)[0].tolist()))["live_category_n"]
    2.0
    >>> match_counts(b)[0, [2, 3, 5, 7]].tolist()   # anchor, channel, product category, on sale
    [1.0, 1.0, 1.0, 0.5]
    """
    ch, cs, ps = batch["channel"], batch["channel_seq"], batch["product_seq"]
    rows = ch.shape[0]  # the sequences may be one row shared by every candidate (serving): they broadcast
    c_len, p_len = batch["channel_len"].float().expand(rows), batch["product_len"].float().expand(rows)
    cat = _matches(cs[:, :, 2], ch[:, 2])
    p_cat = _matches(ps[:, :, 1], ch[:, 2])
    on_sale = batch["dynamic_cats"]
    p_sale = ((ps[:, :, 1, None] == on_sale[:, None, :]) & (on_sale[:, None, :] > 0)).any(-1) & (ps[:, :, 1] > 0)
    cols = [cat.sum(1), cat.sum(1) / c_len.clamp(min=1.0), _matches(cs[:, :, 1], ch[:, 1]).sum(1),
            _matches(cs[:, :, 0], ch[:, 0]).sum(1), cat[:, -1],
            p_cat.sum(1), p_cat.sum(1) / p_len.clamp(min=1.0), p_sale.sum(1) / p_len.clamp(min=1.0), p_cat[:, -1],
            c_len, p_len]
    return torch.stack([c.float() for c in cols], dim=1)


def match_inputs(batch: Mapping[str, Tensor]) -> Tensor:
    """:func:`match_counts` with the count columns ``log1p``-scaled: a network input of the same order as the rest."""
    x = match_counts(batch)
    idx = torch.tensor(COUNT_COLUMNS, device=x.device)
    return x.index_copy(1, idx, torch.log1p(x.index_select(1, idx)))
