"""benchmarks/paper_tables.py: its paired statistics and report on synthetic predictions, and a quick run."""

from __future__ import annotations

import doctest
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tests.benchmarks.helpers import load_script


@pytest.fixture(scope="module")
def pt() -> ModuleType:
    return load_script("paper_tables")


def test_docstring_examples(pt: ModuleType) -> None:
    result = doctest.testmod(pt)
    assert result.attempted >= 2 and result.failed == 0


def _day(rng: np.random.Generator, users: int = 300, per_user: int = 20) -> dict[str, np.ndarray]:
    u = np.repeat(np.arange(users), per_user)
    interest = rng.normal(size=u.size)
    watch = (rng.random(u.size) < 1 / (1 + np.exp(-(2 * interest - 2)))).astype(np.uint8)
    return {"users": u.astype(np.int32), "watch": watch, "interest": interest}


def _write_seed(pt: ModuleType, sd: Path, seed: int, scores: dict[str, np.ndarray], day: dict[str, np.ndarray],
                samples: int) -> dict[str, str]:
    """A seed folder as the script writes it: references, cells (json + npy); returns the fingerprints."""
    sd.mkdir(parents=True)
    refs = {"policy": day["interest"] + np.random.default_rng(seed).normal(0, 2.0, day["interest"].size),
            "oracle_serving": day["interest"], "oracle_logged": day["interest"]}
    np.savez(sd / "_day.npz", users=day["users"], watch=day["watch"], **refs)
    ceiling = {"fingerprint": "data", "rows": float(day["users"].size), "users": 300, "watch_rate": 0.2,
               "random_auc": 0.5, **{k: {"auc": 0.6, "gauc": 0.6, "prec@10": 0.1, "ndcg@10": 0.1} for k in refs}}
    (sd / "_ceiling.json").write_text(json.dumps(ceiling))
    fps = {"_data": "data"}
    for key, s in scores.items():
        fps[key] = f"fp-{key}"
        np.save(sd / f"{key}.npy", s.astype(np.float32))
        record = {"fingerprint": fps[key], "train_seconds": 1.0, "steps": 10, "seconds": 1.5,
                  "stop_reason": "epochs", "metrics": {"auc": 0.6, "gauc": 0.6, "prec@10": 0.1, "ndcg@10": 0.1}}
        (sd / f"{key}.json").write_text(json.dumps(record))
    return fps


def test_identical_predictions_differ_by_exactly_zero_and_a_better_score_is_above(
        pt: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pt, "RESULTS", tmp_path / "results")
    args = pt.parse(["--rows", "headline", "--seeds", "0", "1", "--bootstrap", "200"])
    folder = tmp_path / "results" / "paper_tables" / args.run
    fps = {}
    for seed in (0, 1):
        rng = np.random.default_rng(seed)
        day = _day(rng)
        eta = day["interest"] + rng.normal(0, 1.5, day["interest"].size)
        scores = {"eta_dual__single": eta, "bst_dual__single": eta.copy(),  # identical to the reference
                  "eliverec__adaptive": day["interest"] + rng.normal(0, 0.3, eta.size),  # clearly better
                  "wdl_dual__single": rng.random(eta.size)}  # clearly worse (random)
        fps[seed] = _write_seed(pt, folder / f"seed{seed}", seed, scores, day, args.bootstrap)
    report = pt.write_report(args, folder, fps, 0.0, "test", {"cores": 2, "cpu_model": "x", "torch": "t",
                                                              "torch_threads": 1, "note": "n"})
    rows = {r["model"]: r for r in report["tables"]["II"]}
    same = rows["bst_dual"]["paired"]["auc/vs_eta_dual"]
    assert same["diff"] == 0.0 and same["lo"] <= 0.0 <= same["hi"] and same["sig"] == "n.s."
    assert all(v["diff"] == 0.0 for v in same["seeds"].values())
    better = rows["eliverec"]["paired"]
    assert better["auc/vs_eta_dual"]["sig"] == "above" and better["gauc/vs_eta_dual"]["sig"] == "above"
    assert better["auc/vs_eta_dual"]["lo"] > 0 and set(better["auc/vs_eta_dual"]["seeds"]) == {0, 1}
    assert rows["wdl_dual"]["paired"]["auc/vs_eta_dual"]["sig"] == "below"
    assert rows["_policy"]["row"] == "logging policy" and "auc/vs_eta_dual" in rows["_policy"]["paired"]
    assert report["acceptance"]["complete"] is False  # three duals were not run
    md = (tmp_path / "results" / f"{args.stem}.md").read_text()
    assert "| Ours | eLiveRec |" in md and "above" in md and "reference" in md and "Δ AUC vs ETA dual" in md

    # the replicates alone (predictions gone) give the same report; other settings are not mixed in
    for seed in (0, 1):
        for npy in (folder / f"seed{seed}").glob("*.npy"):
            npy.unlink()
    again = pt.write_report(args, folder, fps, 0.0, "test", report["machine"])
    assert again["tables"]["II"] == report["tables"]["II"]
    fps[1]["eliverec__adaptive"] = "other-settings"
    third = pt.write_report(args, folder, fps, 0.0, "test", report["machine"])
    assert set({r["model"]: r for r in third["tables"]["II"]}["eliverec"]["seeds"]) == {0}


def test_rows_selection(pt: ModuleType) -> None:
    headline = pt.cells_for(None, "headline", False)
    assert headline[0] == pt.REFERENCE and len(headline) == 9 + 6 + 1  # + CAN dual, cross-domain, eliverec_cross
    assert {("eliverec_wo_d", "adaptive"), ("eliverec_cross", "adaptive"), ("eliverec_wo_m", "single"),
            ("dien_dual", "single")} <= set(headline)
    every = pt.cells_for(None, "all", False)
    assert len(every) == len(set(every)) == len({(r[3], r[4]) for r in pt.ROWS})
    issue14 = {("can", "single"), ("can_dual", "single"), ("minet", "vanilla"), ("minet", "adaptive"),
               *[(name, "single") for _, name in pt.CROSS_DOMAIN]}
    assert issue14 <= set(every)
    quick = pt.parse(["--quick", "--models", "minet", "dasl"]).cells
    assert set(quick) == {pt.REFERENCE, ("dasl", "single"), *[("minet", m) for m in ("single", "vanilla", "adaptive")]}
    assert set(pt.cells_for(None, "all", True)) == pt.QUICK_CELLS


@pytest.mark.slow
def test_quick_run_writes_and_resumes(pt: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pt, "RESULTS", tmp_path / "results")
    argv = ["--quick", "--data-root", str(tmp_path / "data"), "--bootstrap", "50"]
    assert pt.main(argv) == 0
    report = json.loads((tmp_path / "results" / "paper_tables_quick.json").read_text())
    assert report["cells_finished"] == 3 and report["status"] == "finished"
    sd = tmp_path / "results" / "paper_tables" / "tiny" / "seed0"
    day = np.load(sd / "_day.npz")
    assert np.load(sd / "eliverec__adaptive.npy").shape == day["watch"].shape
    cell = json.loads((sd / "eliverec__adaptive.json").read_text())
    assert {"auc", "logged_pos/auc", "gap_closed/auc"} <= set(cell["metrics"])
    stamp = (sd / "eta_dual__single.json").stat().st_mtime_ns
    assert pt.main(argv) == 0  # resumed: nothing retrained
    assert (sd / "eta_dual__single.json").stat().st_mtime_ns == stamp


def test_replicates_follow_the_predictions_and_skip_unfinished_cells(pt: ModuleType, tmp_path: Path) -> None:
    """A cached bootstrap is redone when the predictions change under the same fingerprint, and a cell
    whose record has another fingerprint (stale predictions of other settings) gives no replicates."""
    rng = np.random.default_rng(0)
    day = _day(rng)
    sd = tmp_path / "seed0"
    fps = _write_seed(pt, sd, 0, {"m__single": rng.random(day["users"].size)}, day, 50)
    first = pt.replicates_of(tmp_path, 0, "m__single", fps["m__single"], 50)
    np.save(sd / "m__single.npy", day["interest"].astype(np.float32))  # retrained: new predictions, same settings
    second = pt.replicates_of(tmp_path, 0, "m__single", fps["m__single"], 50)
    assert first is not None and second is not None
    assert float(second["auc_point"]) > float(first["auc_point"]) + 0.1
    assert pt.replicates_of(tmp_path, 0, "m__single", "fp-of-other-settings", 50) is None


def test_pairs_between_rows_are_paired_on_the_same_draws(pt: ModuleType) -> None:
    base = {"auc": np.linspace(0.60, 0.70, 201), "auc_point": 0.65}
    better = {"auc": base["auc"] + 0.01, "auc_point": 0.66}
    noisy = {"auc": base["auc"][::-1].copy(), "auc_point": 0.65}  # same mean, draws reversed: unpaired noise
    up, flat = pt.combine({0: (better, base), 1: (better, base)}, "auc"), pt.combine({0: (noisy, base)}, "auc")
    assert up["sig"] == "above" and up["lo"] == pytest.approx(0.01) and flat["sig"] == "n.s."
    lines = pt.pairs_markdown([{"a": "x__adaptive", "b": "y__single", "what": "x - y", "auc": up, "gauc": flat}])
    assert lines[-2] == "| x - y | x__adaptive | y__single | +0.0100 [+0.0100, +0.0100] | above | " \
                        "+0.0000 [-0.0950, +0.0950] | n.s. | 2 |"
    assert pt.pairs_markdown([]) == []
