"""benchmarks/mechanism.py: its plan, summary and report on synthetic records (no training)."""

from __future__ import annotations

import doctest
from types import ModuleType

import pytest

from tests.benchmarks.helpers import load_script


@pytest.fixture(scope="module")
def mech() -> ModuleType:
    return load_script("mechanism")


def test_docstring_examples(mech: ModuleType) -> None:
    result = doctest.testmod(mech)
    assert result.attempted >= 1 and result.failed == 0


def test_plan_pins_the_tunable_values_and_adds_key_seeds(mech: ModuleType) -> None:
    args = mech.parse([])
    assert set(mech.KEY_VARIANTS) <= set(mech.VARIANTS) and "baseline" in mech.KEY_VARIANTS
    assert len(args.plan) == len(mech.VARIANTS) * len(mech.SEEDS) + len(mech.KEY_VARIANTS) * len(mech.KEY_SEEDS)
    assert any(t.startswith("model.lambda2=") for t in args.train)  # pinned: no per-model tuned value applies
    assert mech.parse(["--quick"]).plan == [(0, n) for n in mech.QUICK_VARIANTS]


def _record(mech: ModuleType, name: str, seed: int, auc: float, d: float) -> dict:
    sets = {s: {"auc": 0.6} for s in ("consistent", "product", "live")}
    return {"variant": name, "what": mech.VARIANTS[name].what, "seed": seed, "val_auc": auc, "test": {"auc": auc,
            "gauc": auc}, "steps": 100, "train_seconds": 1.0, "stop_reason": "early_stopping",
            "probe": {"results": {p: sets for p in ("z_cV", "z_sV", "z_cS", "z_sS")},
                      "disentanglement": {"live": d, "product": d}},
            "intention_weights": {"live": {"gap": d}, "product": {"gap": d}},
            "regularisers": {"reg/infonce": 5.0, "retrieved/match_cV_cS": 0.01}}


def test_summary_pairs_with_the_baseline_and_the_report_renders(mech: ModuleType) -> None:
    base = {s: _record(mech, "baseline", s, 0.60 + 0.01 * s, 0.0) for s in (0, 1)}
    cross = {s: _record(mech, "cross", s, 0.62 + 0.01 * s, 0.1) for s in (0, 1)}
    row = mech.summary_row("cross", cross, base)
    assert row["d_test_auc_vs_baseline"] == pytest.approx(0.02) and row["D_live"] == pytest.approx(0.1)
    report = {"run": "r", "profile": "bench", "seeds": [0, 1], "train": [], "status": "finished", "finished": 4,
              "planned": 4, "folds": 5, "summary": [mech.summary_row("baseline", base, base), row], "cost": {},
              "records": {"baseline": base, "cross": cross}, "conclusion_current": False, "wall_seconds": 1.0,
              "machine": {"cores": 2, "cpu_model": "cpu", "torch": "x", "note": "n"}}
    md = mech.markdown(report)
    assert "| cross |" in md and "+0.0200" in md and "2/2" in md
