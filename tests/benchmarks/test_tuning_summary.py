"""benchmarks/tuning_summary.py: the equal-budget table from tune reports, and its refusals."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.benchmarks.helpers import load_script


@pytest.fixture(scope="module")
def ts() -> ModuleType:
    return load_script("tuning_summary")


def _report(model: str, values: list[float | None], epochs: int = 3) -> dict[str, Any]:
    trials = [{"number": i, "state": "FAIL" if v is None else "COMPLETE", "value": v,
               "values": {"train.lr": 0.001 * (i + 1)}, "seconds": 60.0, "steps": 100,
               "stop_reason": "" if v is None else "early_stopping", "run_id": None, "error": ""}
              for i, v in enumerate(values)]
    done = [t for t in trials if t["value"] is not None]
    best = max(done, key=lambda t: t["value"])
    budget = {"model": model, "profile": "bench", "trials": len(values), "end_date": "2026-09-06",
              "train_days": "2026-09-02,2026-09-03", "max_minutes": 8.0, "max_steps": 0, "epochs": epochs,
              "batch_size": 512, "optimizer": "adam", "sampler": "TPE(seed=0)", "space": []}
    return {"model": model, "budget": budget, "parent_run_id": "p" + model, "trials": trials,
            "best": {"val_auc": best["value"], "trial": best["number"], "tuned": {"train": best["values"]}}}


def _write(root: Path, reports: dict[str, dict[str, Any]]) -> Path:
    folder = root / "reports" / "tune"
    folder.mkdir(parents=True)
    for model, rep in reports.items():
        (folder / f"{model}.json").write_text(json.dumps(rep))
    return folder


def test_table_ranks_families_and_measures_gain_over_configured(ts: ModuleType, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ts, "RESULTS", tmp_path / "results")
    _write(tmp_path, {"a": _report("a", [0.60, 0.65, None]), "b": _report("b", [0.70, 0.66, 0.69])})
    assert ts.main(["--data-dir", str(tmp_path), "--stem", "t"]) == 0
    out = json.loads((tmp_path / "results" / "t.json").read_text())
    rows = {r["model"]: r for r in out["families"]}
    assert [r["model"] for r in out["families"]] == ["b", "a"]  # by best validation AUC
    assert rows["a"]["gain"] == pytest.approx(0.05) and rows["a"]["best_trial"] == 1
    assert rows["a"]["completed"] == 2 and rows["a"]["stops"] == {"early_stopping": 2, "fail": 1}
    assert rows["b"]["gain"] == pytest.approx(0.0) and rows["b"]["best_trial"] == 0
    md = (tmp_path / "results" / "t.md").read_text()
    assert "| a | 2/3 | 0.6000 | 0.6500 | +0.0500 | 1 |" in md


def test_refuses_searches_with_different_budgets(ts: ModuleType, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    _write(tmp_path, {"a": _report("a", [0.6, 0.61]), "b": _report("b", [0.6, 0.62], epochs=10)})
    assert ts.main(["--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "do not share one budget" in err and "b: epochs=10 vs 3" in err


def test_missing_and_broken_reports_name_the_file_and_the_fix(ts: ModuleType, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    folder = _write(tmp_path, {"a": _report("a", [0.6])})
    assert ts.main(["--data-dir", str(tmp_path), "--models", "a", "zz"]) == 2
    assert "zz.json: no such report (run `eliverec tune --model zz`" in capsys.readouterr().err
    (folder / "a.json").write_text('{"model": "a",\n  broken')
    assert ts.main(["--data-dir", str(tmp_path)]) == 2
    assert "a.json:2: not JSON" in capsys.readouterr().err
    assert ts.main(["--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "no tune reports" in capsys.readouterr().err
