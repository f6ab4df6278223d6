"""What the chaos tests share: the kill points and their seed, and the check for half-written leftovers.

The seed changes with every run (so CI runs together try more moments than a fixed set would);
a failure names it: ``CHAOS_SEED=<seed> pytest tests/chaos`` replays the same kill points.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

#: Kill points per stage test and run (each a random moment of the stage's uninterrupted run time).
KILL_POINTS = 3
SEED = int(os.environ.get("CHAOS_SEED", time.time_ns() % 2**31))


def leftovers(data_dir: Path) -> list[str]:
    """Staging, temporary or half-swapped paths left in ``data_dir``."""
    staged = list((data_dir / ".staging").glob("*")) if (data_dir / ".staging").exists() else []
    temporary = [p for p in data_dir.rglob(".*") if ".old-" in p.name or ".tmp" in p.name]
    return [str(p) for p in staged + temporary]
