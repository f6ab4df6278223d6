"""The offline metrics' old import path: they live in :mod:`eliverec.scoring.metrics` (training reads them too).

Kept only for ``benchmarks/paper_tables.py``, which still imports them from here; new code imports
:mod:`eliverec.scoring.metrics`.
"""

from eliverec.scoring.metrics import auc, compute_metrics, gauc, topk_metrics

__all__ = ["auc", "compute_metrics", "gauc", "topk_metrics"]
