"""Summarise the equal-budget searches of one data root (``eliverec tune`` reports) as one table.

Reads ``<data_dir>/reports/tune/<model>.json`` (written by :func:`eliverec.training.tune.tune`) for the
families given (default: every report there) and writes ``benchmarks/results/<stem>.json`` and ``.md``:
per family the budget (trials, epochs cap, wall-clock cap), the configured values' validation AUC
(trial 0 of every search), the best trial's, the gain, the values and how each trial stopped. A family's
searches must share one budget: the script refuses reports whose budgets differ (an unequal search is
not a fair comparison), naming the families and the keys that differ.

Run: ``.venv/bin/python benchmarks/tuning_summary.py --data-dir data/paper_tables/bench/seed0/data
[--models eliverec eta_dual ...] [--stem tuning_bench]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python benchmarks/tuning_summary.py`
    sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"
#: budget keys every family's search must share (the equal-budget rule)
BUDGET_KEYS = ("profile", "trials", "end_date", "train_days", "max_minutes", "max_steps", "epochs", "batch_size",
               "optimizer", "sampler")


class SummaryError(Exception):
    """A report is missing, unreadable or made with another budget."""


def load_reports(folder: Path, models: list[str] | None) -> dict[str, dict[str, Any]]:
    """The tune reports of ``models`` (default: all) in ``folder``, by model name."""
    paths = [folder / f"{m}.json" for m in models] if models else sorted(folder.glob("*.json"))
    if not paths:
        raise SummaryError(f"{folder}: no tune reports (run `eliverec tune --model NAME` first)")
    out = {}
    for path in paths:
        if not path.is_file():
            raise SummaryError(f"{path}: no such report (run `eliverec tune --model {path.stem}` on this data root)")
        try:
            out[path.stem] = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise SummaryError(f"{path}:{exc.lineno}: not JSON ({exc.msg}); re-run the search") from exc
    return out


def check_budgets(reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The one budget every report shares; :class:`SummaryError` naming the differences otherwise."""
    budgets = {m: {k: r["budget"].get(k) for k in BUDGET_KEYS} for m, r in reports.items()}
    first, ref = next(iter(budgets.items()))
    diff = {m: sorted(k for k in BUDGET_KEYS if b[k] != ref[k]) for m, b in budgets.items()}
    bad = {m: keys for m, keys in diff.items() if keys}
    if bad:
        detail = "; ".join(f"{m}: {', '.join(f'{k}={budgets[m][k]!r} vs {ref[k]!r}' for k in keys)}"
                           for m, keys in bad.items())
        raise SummaryError(f"the searches do not share one budget (reference {first}): {detail}")
    return ref


def family_row(model: str, report: dict[str, Any]) -> dict[str, Any]:
    """One family: configured (trial 0) vs best validation AUC, the values, how the trials stopped."""
    trials = report["trials"]
    done = [t for t in trials if t["value"] is not None]
    configured = trials[0]["value"] if trials and trials[0]["number"] == 0 else None
    best = report["best"]
    stops: dict[str, int] = {}
    for t in trials:
        key = t["stop_reason"] or t["state"].lower()
        stops[key] = stops.get(key, 0) + 1
    return {"model": model, "trials": len(trials), "completed": len(done), "configured_val_auc": configured,
            "best_val_auc": best["val_auc"], "best_trial": best["trial"],
            "gain": None if configured is None else best["val_auc"] - configured, "tuned": best["tuned"],
            "stops": stops, "seconds": sum(t["seconds"] for t in trials), "parent_run_id": report["parent_run_id"]}


def _fmt(v: float | None, digits: int = 4, sign: bool = False) -> str:
    return "" if v is None else f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def markdown(budget: dict[str, Any], rows: list[dict[str, Any]], folder: Path) -> str:
    """The summary table."""
    lines = [f"# Equal-budget tuning ({budget['profile']} profile)", "",
             f"Reports: `{folder}`. Every family: {budget['trials']} trials (trial 0 = the configured values, then "
             f"{budget['sampler']}), each one training run of at most {budget['epochs']} epochs with early stopping "
             f"(wall-clock cap {budget['max_minutes']} min), batch {budget['batch_size']}, {budget['optimizer']}; "
             f"objective: the best validation watch AUC on the tail of {budget['train_days']} (test day "
             f"{budget['end_date']} not read).", "",
             "| family | trials | configured val AUC | best val AUC | gain | best trial | values | stops | minutes |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        values = ", ".join(f"{k}={v}" for part in r["tuned"].values() for k, v in part.items())
        stops = ", ".join(f"{k} {n}" for k, n in sorted(r["stops"].items()))
        lines.append(f"| {r['model']} | {r['completed']}/{r['trials']} | {_fmt(r['configured_val_auc'])} | "
                     f"{_fmt(r['best_val_auc'])} | {_fmt(r['gain'], sign=True)} | {r['best_trial']} | {values} | "
                     f"{stops} | {r['seconds'] / 60:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, required=True, help="the data root the searches ran on")
    ap.add_argument("--models", nargs="+", default=None, help="families (default: every report there)")
    ap.add_argument("--stem", default="tuning_bench", help="output name under benchmarks/results/")
    args = ap.parse_args(argv)
    from eliverec.layout import DataLayout

    folder = DataLayout(args.data_dir.resolve()).reports("tune")
    try:
        reports = load_reports(folder, args.models)
        budget = check_budgets(reports)
    except SummaryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = sorted((family_row(m, r) for m, r in reports.items()), key=lambda r: -r["best_val_auc"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.stem}.json").write_text(json.dumps({"budget": budget, "families": rows}, indent=1) + "\n")
    (RESULTS / f"{args.stem}.md").write_text(markdown(budget, rows, folder))
    print(f"{len(rows)} families -> {RESULTS / args.stem}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
