"""Scoring a dataset with a network and measuring the scores: shared by training and evaluation.

- :mod:`.scores`: task scores of every row (:func:`~.scores.predict`), rows moved to the serving
  position, the scored frame the metrics read, torch's thread count.
- :mod:`.metrics`: the offline ranking metrics (AUC, gAUC, Prec@K, NDCG@K, auxiliary tasks,
  segments, calibration).
- :mod:`.runtime`: one request's scorer on ``serving.runtime`` (ONNX Runtime export checked against
  torch, or torch): the service scores with it and the gate times it.

Training (validation metrics, early stopping) and evaluation (reports, the gate, probes) both
import from here, and neither imports the other.
"""
