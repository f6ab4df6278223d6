"""Self-supervised regularisers of the disentangled encoder (paper eq. 8-10)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: dVar below this counts as a constant input (dCor 0): centred distances of identical rows are ~1e-22.
_MIN_DVAR = 1e-12


def _centered_distances(x: Tensor) -> Tensor:
    """Double-centred pairwise Euclidean distance matrix of the rows of ``x`` (B, d)."""
    sq = (x * x).sum(-1)
    d2 = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * x @ x.T).clamp(min=0)
    d = torch.sqrt(d2 + 1e-12)  # the epsilon keeps the gradient finite on the diagonal
    return d - d.mean(0, keepdim=True) - d.mean(1, keepdim=True) + d.mean()


def distance_correlation(x: Tensor, y: Tensor) -> Tensor:
    """Sample distance correlation between batch matrices ``x`` (B, d1) and ``y`` (B, d2) (eq. 8).

    ``dCor = dCov(x, y) / sqrt(dVar(x) dVar(y))`` with the V-statistic ``dCov^2 = mean(A * B)`` over
    double-centred distance matrices (Szekely et al. 2007). 0 for independent, 1 for identical inputs.

    >>> x = torch.randn(64, 3, dtype=torch.float64)
    >>> round(float(distance_correlation(x, x)), 4), round(float(distance_correlation(x, 2 * x + 1)), 4)
    (1.0, 1.0)
    >>> round(float(distance_correlation(x, torch.zeros(64, 3, dtype=torch.float64))), 4)  # constant: dVar = 0
    0.0
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"distance_correlation needs the same number of rows, got {x.shape[0]} and {y.shape[0]}")
    a, b = _centered_distances(x), _centered_distances(y)
    dcov2 = (a * b).mean().clamp(min=0)
    vx, vy = (a * a).mean(), (b * b).mean()
    # A constant input (a domain whose every sequence in the batch is empty) has dVar = 0, and dCor is 0 by
    # definition. The double `where` keeps its gradient 0, not 0 * inf = NaN through sqrt at 0.
    spread = (vx > _MIN_DVAR) & (vy > _MIN_DVAR)
    dvar = torch.where(spread, vx * vy, torch.ones_like(vx)).sqrt()
    return torch.sqrt(torch.where(spread, dcov2 / dvar, torch.zeros_like(dcov2)) + 1e-12)


def info_nce(
    anchor: Tensor, positive: Tensor, tau: float, same_group: Tensor | None = None, valid: Tensor | None = None,
    hard: Tensor | None = None,
) -> Tensor:
    """InfoNCE over the batch with cosine similarity (eq. 9).

    Row ``i`` of ``positive`` is the positive of row ``i`` of ``anchor``; the other rows are negatives,
    except rows in the same group (``same_group`` (B, B) bool, e.g. the same user: not negatives).
    ``hard`` (B, K, d) adds K negatives of each row's own (for example the same user's specific parts).
    ``valid`` (B,) drops rows from the mean (for example a user with an empty sequence).

    >>> z = torch.eye(4)
    >>> bool(info_nce(z, z, 0.5) < info_nce(z, z.roll(1, 0), 0.5))
    True
    >>> bool(info_nce(z, z, 0.5, hard=z.unsqueeze(1)) > info_nce(z, z, 0.5, hard=-z.unsqueeze(1)))
    True
    """
    a = F.normalize(anchor, dim=-1)
    sim = a @ F.normalize(positive, dim=-1).T / tau  # (B, B)
    if same_group is not None:
        eye = torch.eye(sim.shape[0], dtype=torch.bool, device=sim.device)
        sim = sim.masked_fill(same_group & ~eye, float("-inf"))
    diag = torch.diagonal(sim)
    if hard is not None:  # (B, K): cos(anchor_i, hard_ik) / tau, appended to row i's candidates
        sim = torch.cat([sim, torch.einsum("bd,bkd->bk", a, F.normalize(hard, dim=-1)) / tau], dim=1)
    loss = torch.logsumexp(sim, dim=1) - diag
    if valid is None:
        return loss.mean()
    return (loss * valid).sum() / valid.sum().clamp(min=1)


def cosine_distance(a: Tensor, b: Tensor, valid: Tensor | None = None) -> Tensor:
    """Mean ``1 - cos(a_i, b_i)`` (the paper's "Cos" variant of eq. 9).

    >>> round(float(cosine_distance(torch.ones(2, 3), torch.ones(2, 3))), 6)
    0.0
    """
    d = 1 - F.cosine_similarity(a, b, dim=-1, eps=1e-8)
    return d.mean() if valid is None else (d * valid).sum() / valid.sum().clamp(min=1)


def euclidean_distance(a: Tensor, b: Tensor, valid: Tensor | None = None) -> Tensor:
    """Mean ``||a_i - b_i||_2`` (the paper's "Euc" variant of eq. 9).

    >>> float(euclidean_distance(torch.zeros(1, 2), torch.tensor([[3.0, 4.0]])))
    5.0
    """
    d = torch.sqrt(((a - b) ** 2).sum(-1) + 1e-12)
    return d.mean() if valid is None else (d * valid).sum() / valid.sum().clamp(min=1)
