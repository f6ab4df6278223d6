"""Online experiments against the ranking service.

- :mod:`eliverec.experiments.traffic`: the simulated world's users played against the service (``eliverec traffic``).
- :mod:`eliverec.experiments.analysis`: per-variant metrics, delta-method intervals, SRM (``eliverec ab report``).
- :mod:`eliverec.experiments.ramp`: staged rollout with guardrails, rollback, promotion (``eliverec ab ramp``).
- :mod:`eliverec.experiments.controls`: A/A and negative-control variants of a registered model.
"""
