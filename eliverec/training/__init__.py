"""Training: the trainer (one process or torchrun DDP), checkpoints, MLflow tracking, the pyfunc model.

Entry point: :func:`eliverec.training.trainer.train` (``eliverec train``); multi-process and
multi-node launching: :mod:`eliverec.training.launch`.
"""
