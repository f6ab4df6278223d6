"""Scoring a dataset with a network and measuring the scores: shared by training and evaluation.

- :mod:`.scores`: task scores of every row (:func:`~.scores.predict`), rows moved to the serving
  position, the scored frame the metrics read, torch's thread count.
- :mod:`.metrics`: the offline ranking metrics (AUC, gAUC, Prec@K, NDCG@K, auxiliary tasks,
  segments, calibration).

Training (validation metrics, early stopping) and evaluation (reports, the gate, probes) both
import from here, and neither imports the other.
"""
