"""The simulated Taobao-Live world (DESIGN section 4): the embedded data source and the oracle.

- :class:`World` (``World.from_settings(settings)``): entities, daily schedules, the logging
  policy, the oracle (true probabilities, intent sets) and sampled behaviour for ranked lists.
- :func:`simulate`: writes raw logs day by day in the contract of DESIGN section 3.
- :func:`calibration_stats`: the paper's Table I statistics measured from written raw logs.
"""

from eliverec.world.calibration import calibration_stats
from eliverec.world.simulation import simulate
from eliverec.world.world import World

__all__ = ["World", "calibration_stats", "simulate"]
