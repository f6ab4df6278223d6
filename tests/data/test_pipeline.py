"""The simulator's raw logs go through ingest and validation untouched."""

from __future__ import annotations

import pytest

from eliverec.data.ingest import ingest_day
from eliverec.data.suites import validate_day


@pytest.mark.slow
def test_simulated_days_ingest_cleanly_and_pass_validation(tiny_settings):
    from eliverec.world import simulate

    res = simulate(tiny_settings, days=1, users=120, progress=False)
    for date in res["dates"]:
        m = ingest_day(tiny_settings, date)
        assert m["totals"]["quarantined"] == 0 and m["totals"]["duplicates"] == 0
        assert m["tables"]["impression"]["rows"] > 0 and m["tables"]["enter"]["rows"] > 0
        assert sum(t["rows"] for e, t in m["tables"].items() if e not in ("users", "channels", "products")) == (
            m["totals"]["lines_read"]
        )
    assert validate_day(tiny_settings, res["dates"][-1])["success"]
