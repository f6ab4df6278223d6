"""Optimizers for sparse embedding tables next to dense layers, and gradient clipping that handles both.

A batch touches a few thousand of the millions of embedding rows. With dense gradients every step
writes a full-size gradient for every table and the optimizer updates every row (Adam: three passes
over 3.5M parameters at the default profile), which dominated a CPU step. With
``train.sparse_embeddings`` the model's ``nn.Embedding`` tables produce sparse gradients
(``sparse=True``) and :class:`SplitOptimizer` pairs

- a dense optimizer (Adam or Adagrad, with ``train.weight_decay``) over the dense parameters, with
- a sparse one over the tables: ``SparseAdam`` (lazy Adam: only the rows in the batch move, their
  moments too) for ``optimizer: adam``, and Adagrad for ``optimizer: adagrad`` (the paper's choice,
  section V-D; torch's Adagrad updates only the touched rows of a sparse gradient). Neither supports
  weight decay on sparse gradients, so ``train.weight_decay`` reaches the tables the way DIN's
  mini-batch aware regularisation does (Zhou et al., KDD 2018, eq. 4): an L2 gradient on the rows the
  batch touched only (:meth:`SplitOptimizer.decay_rows`), not on the millions it did not.

The split keeps the interface the trainer and :class:`torch.amp.GradScaler` use (``param_groups``,
``zero_grad``, ``step``, ``state_dict``/``load_state_dict``), so checkpoints and exact resume work
unchanged. Sparse gradients need a collective that supports them: gloo (CPU DDP) does, NCCL does
not, so :func:`use_sparse` turns them off for multi-GPU DDP.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from eliverec.config import Settings


def use_sparse(settings: Settings, device: torch.device, distributed: bool) -> bool:
    """Whether embedding tables should take sparse gradients here (not under NCCL DDP)."""
    return settings.train.sparse_embeddings and not (distributed and device.type == "cuda")


def make_sparse(model: nn.Module, sparse: bool = True) -> list[nn.Parameter]:
    """Switch every ``nn.Embedding`` of ``model`` to sparse gradients; returns their weights."""
    tables = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    for table in tables:
        table.sparse = sparse
    return [t.weight for t in tables]


class SplitOptimizer:
    """A dense and an optional sparse optimizer driven as one (duck-types ``torch.optim.Optimizer``)."""

    def __init__(self, dense: torch.optim.Optimizer, sparse: torch.optim.Optimizer | None,
                 row_decay: float = 0.0) -> None:
        self.dense, self.sparse, self.row_decay = dense, sparse, row_decay
        self.parts = [o for o in (dense, sparse) if o is not None]

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [g for o in self.parts for g in o.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.parts:
            o.zero_grad(set_to_none=set_to_none)

    def step(self, closure: Any = None) -> None:
        self.decay_rows()
        for o in self.parts:
            o.step()

    @torch.no_grad()
    def decay_rows(self) -> None:
        """Add ``row_decay * w`` to the sparse gradient of every table row the batch touched (DIN eq. 4)."""
        if self.sparse is None or self.row_decay <= 0:
            return
        for group in self.sparse.param_groups:
            for p in group["params"]:
                if p.grad is None or not p.grad.is_sparse:
                    continue
                g = p.grad.coalesce()
                rows = g.indices()[0]
                p.grad = torch.sparse_coo_tensor(g.indices(), g.values() + self.row_decay * p[rows], g.shape,
                                                 is_coalesced=True)

    def state_dict(self) -> dict[str, Any]:
        return {"dense": self.dense.state_dict(), "sparse": self.sparse.state_dict() if self.sparse else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "dense" not in state:  # a checkpoint written before the split: one dense optimizer
            raise ValueError("the checkpoint's optimizer state predates sparse embeddings; "
                             "resume with --set train.sparse_embeddings=false or start a fresh run")
        self.dense.load_state_dict(state["dense"])
        if (self.sparse is None) != (state["sparse"] is None):
            raise ValueError("the checkpoint was written with a different train.sparse_embeddings setting; "
                             "resume with the setting it was trained with")
        if self.sparse is not None:
            self.sparse.load_state_dict(state["sparse"])


def make_optimizer(settings: Settings, dense: list[nn.Parameter], sparse: list[nn.Parameter]) -> SplitOptimizer:
    """Adagrad (paper, section V-D) or Adam for ``dense``; Adagrad or SparseAdam for the ``sparse`` tables."""
    cfg = settings.train
    if cfg.optimizer == "adagrad":
        d_opt: torch.optim.Optimizer = torch.optim.Adagrad(dense, lr=cfg.lr, weight_decay=cfg.weight_decay)
        s_opt: torch.optim.Optimizer | None = torch.optim.Adagrad(sparse, lr=cfg.lr) if sparse else None
    else:
        d_opt = torch.optim.Adam(dense, lr=cfg.lr, weight_decay=cfg.weight_decay)
        s_opt = torch.optim.SparseAdam(sparse, lr=cfg.lr) if sparse else None
    return SplitOptimizer(d_opt, s_opt, row_decay=cfg.weight_decay)


@torch.no_grad()
def clip_gradients(params: Iterable[nn.Parameter], max_norm: float) -> float:
    """Scale all gradients (dense and sparse) so their joint L2 norm is at most ``max_norm``; returns the norm.

    ``torch.nn.utils.clip_grad_norm_`` has no sparse kernel; a sparse gradient is coalesced first
    (repeated rows summed) so its norm is the norm of the dense gradient it stands for.

    >>> e = nn.Embedding(5, 2, sparse=True)
    >>> e(torch.tensor([1, 1, 2])).sum().backward()
    >>> round(clip_gradients(e.parameters(), 1.0), 3), round(float(e.weight.grad.coalesce().values().norm()), 3)
    (3.162, 1.0)
    """
    squares = []
    grads = []
    for p in params:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
            squares.append(p.grad.values().pow(2).sum())
        else:
            squares.append(p.grad.pow(2).sum())
        grads.append(p.grad)
    if not squares:
        return 0.0
    norm = float(torch.stack(squares).sum().sqrt())
    coef = max_norm / (norm + 1e-6)
    if coef < 1.0:
        for g in grads:
            if g.is_sparse:
                g.values().mul_(coef)
            else:
                g.mul_(coef)
    return norm
