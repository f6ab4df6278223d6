"""The paper's Tables II-IV reproduced on the simulated world, with the oracle ceiling and a z_c probe.

For each seed, one world is simulated, ingested and featured once (``<data_dir>/paper_tables/<profile>/
seed<k>/``); every cell (a model and its multi-task mode) is trained on the train days and scored on the
test day with the metrics of :mod:`eliverec.evaluation.metrics` (AUC, gAUC, Prec@10, NDCG@10), next
to the oracle's ceiling and the logging policy (:mod:`eliverec.evaluation.oracle`: share of the
policy-to-oracle gap closed). The full eLiveRec cell also runs the linear probe of
:mod:`eliverec.evaluation.probe`. A table row shared by several tables (BST_dual in II, III and IV) is
one cell. Cells are written to ``benchmarks/results/paper_tables/<profile>/seed<k>/<cell>.json`` and
skipped when present (resumable); ``benchmarks/results/paper_tables.{json,md}`` are rewritten after
every cell, so partial results are always on disk.

Run: ``.venv/bin/python benchmarks/paper_tables.py [--quick] [--seeds 0 1 2] [--only II|III|IV]
[--max-minutes M] [--profile bench] [--report-only]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _machine import cpu_model  # sibling module: the scripts run as `python benchmarks/<name>.py`

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RESULTS = REPO / "benchmarks" / "results"
METRICS = ("auc", "gauc", "prec@10", "ndcg@10")

# (table, group, row label, registry model name, model.mtl)
ROWS: list[tuple[str, str, str, str, str]] = [
    *[("II", "Single CTR", label, name, "single") for label, name in
      (("WDL+", "wdl"), ("DIN", "din"), ("DIEN", "dien"), ("HGN", "hgn"), ("BST", "bst"), ("ETA", "eta"))],
    *[("II", "Dual CTR", label, f"{name}_dual", "single") for label, name in
      (("WDL+", "wdl"), ("DIN", "din"), ("DIEN", "dien"), ("HGN", "hgn"), ("BST", "bst"), ("ETA", "eta"))],
    ("II", "Ours", "eLiveRec wo.M", "eliverec_wo_m", "single"),
    ("II", "Ours", "eLiveRec", "eliverec", "adaptive"),
    ("III", "", "BST_Dual", "bst_dual", "single"),
    ("III", "", "ETA_Dual", "eta_dual", "single"),
    *[("III", "", f"eLiveRec {v}", f"eliverec_{k}", "adaptive") for k, v in
      (("wo_p", "wo.P"), ("wo_c", "wo.C"), ("wo_n", "wo.N"), ("wo_d", "wo.D"), ("cos", "Cos"), ("euc", "Euc"),
       ("sr", "SR"))],
    ("III", "", "eLiveRec", "eliverec", "adaptive"),
    *[("IV", label, variant, f"{name}_dual", mode) for label, name in
      (("DIN", "din"), ("HGN", "hgn"), ("BST", "bst"), ("ETA", "eta"))
      for variant, mode in (("single task", "single"), ("vanilla MTL", "vanilla"), ("adaptive MTL", "adaptive"))],
    ("IV", "eLiveRec", "single task", "eliverec_wo_m", "single"),
    ("IV", "eLiveRec", "vanilla MTL", "eliverec_vanilla", "vanilla"),
    ("IV", "eLiveRec", "adaptive MTL", "eliverec", "adaptive"),
]
#: Run first: eLiveRec with and without adaptive MTL and the strongest dual baselines.
FIRST = [("eliverec", "adaptive"), ("eliverec_wo_m", "single"), ("bst_dual", "single"), ("eta_dual", "single"),
         ("wdl_dual", "single"), ("eliverec_wo_d", "adaptive")]
QUICK_CELLS = {("wdl", "single"), ("bst_dual", "single"), ("eliverec", "adaptive")}
TITLES = {"II": "Table II: recommendation performance", "III": "Table III: ablation of the disentangled encoder",
          "IV": "Table IV: ablation of the adaptive multi-task learning"}


def cell_key(model: str, mtl: str) -> str:
    """File name of a cell (model and multi-task mode)."""
    return f"{model}__{mtl}"


def cells_for(only: str | None, quick: bool) -> list[tuple[str, str]]:
    """Distinct (model, mtl) cells: the headline cells first (partial runs say the most), then table order."""
    out: list[tuple[str, str]] = []
    for table, _, _, model, mtl in ROWS:
        if (only and table != only) or (quick and (model, mtl) not in QUICK_CELLS):
            continue
        if (model, mtl) not in out:
            out.append((model, mtl))
    return sorted(out, key=lambda c: FIRST.index(c) if c in FIRST else len(FIRST))


# ------------------------------------------------------------------------------------------------ data
def seed_settings(profile: str, seed: int, root: Path) -> Any:
    """Settings of one seed: its own data root and MLflow store; no model logging (scored in-process)."""
    from eliverec.config import load_settings

    return load_settings(profile, overrides=[f"seed={seed}", f"tracking.uri=sqlite:///{root}/mlflow.db",
                                             "tracking.log_model=false", "tracking.experiment=paper-tables"],
                         data_dir=root / "data")


def prepare(settings: Any) -> str:
    """Simulate, ingest and feature one seed's world once; returns the test day."""
    from eliverec.data.ingest import ingest_day
    from eliverec.features.build import build_features
    from eliverec.world import World, simulate

    data = Path(settings.data_dir)
    done = data / "_prepared.json"
    if done.is_file():
        return json.loads(done.read_text())["test_day"]
    if data.exists():
        shutil.rmtree(data)
    summary = simulate(settings, progress=False)
    for date in summary["dates"]:
        ingest_day(settings, date)
    test_day = summary["dates"][-1]
    build = build_features(settings, test_day)
    info = {"test_day": test_day, "world": World.from_settings(settings).describe(),
            "train_rows": build["train_rows"], "test_rows": build["test_rows"]}
    done.write_text(json.dumps(info, indent=2))
    return test_day


def seed_ceiling(settings: Any, test_day: str, folder: Path) -> dict[str, Any]:
    """Oracle / policy / random AUC and gAUC of the seed's test day (cached)."""
    from eliverec.evaluation.oracle import ceiling

    path = folder / "_ceiling.json"
    if path.is_file():
        return json.loads(path.read_text())
    out = {"test_day": test_day, **ceiling(settings, test_day, seed=settings.seed)}
    out.update(json.loads((Path(settings.data_dir) / "_prepared.json").read_text()))
    atomic_json(path, out)
    return out


# ------------------------------------------------------------------------------------------------ cells
def run_cell(settings: Any, model: str, mtl: str, test_day: str, ceil: dict[str, Any]) -> dict[str, Any]:
    """Train one cell, score the test day, compare with the ceiling (and probe the full eLiveRec)."""
    import pandas as pd
    import torch

    from eliverec.config import Settings
    from eliverec.evaluation.evaluate import scored_frame
    from eliverec.evaluation.metrics import compute_metrics
    from eliverec.evaluation.oracle import gaps
    from eliverec.evaluation.probe import capture_parts, load_trained, probe, split_parts
    from eliverec.training.data import load_days
    from eliverec.training.trainer import predict, train

    tree = settings.section_dict()
    tree["model"]["mtl"] = mtl
    cell_settings = Settings.model_validate(tree)
    t0 = time.perf_counter()
    result = train(cell_settings, model_name=model, end_date=test_day, run_name=cell_key(model, mtl), resume=True)
    train_s = time.perf_counter() - t0
    net = load_trained(result.checkpoint_dir)
    test = load_days(settings.data_dir, [test_day])
    probed = model == "eliverec"
    with capture_parts(net) if probed else contextlib.nullcontext([]) as seen:  # z parts for the probe, same pass
        preds = predict(net, test, settings.evaluation.batch_size, torch.device("cpu"))
    metrics = compute_metrics(scored_frame(test, pd.DataFrame(preds)), settings.evaluation.k,
                              settings.evaluation.calibration_bins)
    metrics.update(gaps(metrics, ceil))
    out: dict[str, Any] = {"model": model, "mtl": mtl, "seed": settings.seed, "test_day": test_day,
                           "steps": result.steps, "train_seconds": round(train_s, 1),
                           "val_auc": result.metrics.get("val/auc"), "run_id": result.run_id,
                           "metrics": {k: _num(v) for k, v in metrics.items()}}
    if probed:
        out["probe"] = probe(settings, net, test_day, seed=settings.seed, parts=split_parts(net, seen))
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


# ------------------------------------------------------------------------------------------------ report
def _num(v: Any) -> Any:
    v = v.item() if isinstance(v, np.generic) else v
    return None if isinstance(v, float) and math.isnan(v) else v


def atomic_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    tmp.replace(path)


def machine() -> dict[str, Any]:
    """Machine facts for the record."""
    import torch

    return {"cores": os.cpu_count(), "cpu_model": cpu_model(), "torch": torch.__version__, "torch_threads":
            torch.get_num_threads(), "python": platform.python_version(), "load_avg_at_start": os.getloadavg(),
            "note": f"1-min load average at start {os.getloadavg()[0]:.1f}; cells train with train.threads"}


def collect(folder: Path, seeds: list[int]) -> tuple[dict[str, dict[int, Any]], dict[int, Any]]:
    """Finished cells ``{cell: {seed: result}}`` and ceilings ``{seed: ceiling}`` on disk."""
    cells: dict[str, dict[int, Any]] = {}
    ceilings: dict[int, Any] = {}
    for seed in seeds:
        sd = folder / f"seed{seed}"
        if (sd / "_ceiling.json").is_file():
            ceilings[seed] = json.loads((sd / "_ceiling.json").read_text())
        for p in sorted(sd.glob("*__*.json")):
            cells.setdefault(p.stem, {})[seed] = json.loads(p.read_text())
    return cells, ceilings


def _stat(values: list[float]) -> dict[str, Any]:
    vals = [v for v in values if v is not None]
    if not vals:
        return {"mean": None, "std": None}
    return {"mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else None}


def tables(cells: dict[str, dict[int, Any]], only: str | None, quick: bool) -> dict[str, list[dict[str, Any]]]:
    """Rows of each table with mean and std over the finished seeds."""
    out: dict[str, list[dict[str, Any]]] = {}
    for table, group, label, model, mtl in ROWS:
        if (only and table != only) or (quick and (model, mtl) not in QUICK_CELLS):
            continue
        done = cells.get(cell_key(model, mtl), {})
        row = {"group": group, "row": label, "model": model, "mtl": mtl, "seeds": sorted(done)}
        for m in (*METRICS, "gap_closed/auc", "gap_closed/gauc"):
            row[m] = _stat([r["metrics"].get(m) for r in done.values()])
        row["train_seconds"] = _stat([r["train_seconds"] for r in done.values()])
        out.setdefault(table, []).append(row)
    return out


def _pm(s: dict[str, Any]) -> str:
    if s["mean"] is None:
        return "n/a"
    return f"{s['mean']:.4f}" if s["std"] is None else f"{s['mean']:.4f} ± {s['std']:.4f}"


def markdown(report: dict[str, Any]) -> str:
    """The tables in the paper's layout (mean ± std over seeds), ceilings, probe, facts."""
    lines = [f"# Paper tables on the simulated world ({report['profile']} profile)", "",
             f"Seeds requested: {report['seeds']}; cells finished: {report['cells_finished']} of "
             f"{report['cells_planned']}; wall time of the last invocation {report['wall_seconds']:.0f} s, "
             f"training + scoring time of all finished cells {report.get('cell_seconds_total', 0):.0f} s; "
             f"status: {report['status']}.",
             "Values: mean ± sample std over the seeds finished (column `n`; the mean alone when n = 1). "
             "`gap` = share of the logging-policy-to-oracle AUC gap closed.", ""]
    for table, rows in report["tables"].items():
        lines += [f"## {TITLES[table]}", "", "| group | model | AUC | gAUC | Prec@10 | NDCG@10 | gap (AUC) | n |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {r['group']} | {r['row']} | {_pm(r['auc'])} | {_pm(r['gauc'])} | {_pm(r['prec@10'])} | "
                  f"{_pm(r['ndcg@10'])} | {_pm(r['gap_closed/auc'])} | {len(r['seeds'])} |" for r in rows]
        lines.append("")
    lines += ["## Ceilings per seed (test day)", "",
              "| seed | test rows | watch rate | oracle AUC | oracle gAUC | policy AUC | policy gAUC | random AUC |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for seed, c in sorted(report["ceilings"].items()):
        lines.append(f"| {seed} | {int(c['rows'])} | {c['watch_rate']:.4f} | {c['oracle_auc']:.4f} | "
                     f"{c['oracle_gauc']:.4f} | {c['policy_auc']:.4f} | {c['policy_gauc']:.4f} | "
                     f"{c['random_auc']:.4f} |")
    lines.append("")
    for seed, pr in sorted(report["probes"].items()):
        lines += [f"## Linear probe of eLiveRec's parts (seed {seed}, {pr['test_users']} held-out users)", "",
                  "Macro AUC / precision@k of a one-vs-rest logistic probe from the user's mean part to the "
                  "intent categories (prior precision@k in brackets).", "",
                  "| part | consistent | product-specific | live-specific |", "| --- | --- | --- | --- |"]
        for part, sets in pr["results"].items():
            cols = [f"{r['auc']:.3f} / {r['precision@k']:.3f} ({r['prior_precision@k']:.3f})" for r in sets.values()]
            lines.append(f"| {part} | {' | '.join(cols)} |")
        lines.append("")
    m = report["machine"]
    lines += [f"Machine: {m['cores']} cores, {m['cpu_model']}, torch {m['torch']} ({m['torch_threads']} threads); "
              f"{m['note']}.", ""]
    return "\n".join(lines)


def write_report(args: argparse.Namespace, folder: Path, started: float, status: str, planned: int,
                 facts: dict[str, Any]) -> dict[str, Any]:
    cells, ceilings = collect(folder, args.seeds)
    finished = sum(len(v) for k, v in cells.items() if tuple(k.split("__")) in set(args.cells))
    probes = {s: r["probe"] for s, r in cells.get(cell_key("eliverec", "adaptive"), {}).items() if "probe" in r}
    report = {"profile": args.profile, "seeds": args.seeds, "only": args.only, "quick": args.quick,
              "status": status, "cells_planned": planned, "cells_finished": finished,
              "wall_seconds": time.time() - started, "machine": facts,
              "cell_seconds_total": sum(r.get("seconds", 0.0) for v in cells.values() for r in v.values()),
              "tables": tables(cells, args.only, args.quick), "ceilings": ceilings, "probes": probes,
              "cells": {k: {s: {kk: vv for kk, vv in r.items() if kk != "probe"} for s, r in v.items()}
                        for k, v in cells.items()}}
    stem = "paper_tables_quick" if args.quick else "paper_tables"
    atomic_json(RESULTS / f"{stem}.json", report)
    (RESULTS / f"{stem}.md").write_text(markdown(report))
    return report


# ------------------------------------------------------------------------------------------------ main
def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="world seeds (default 0 1 2; quick: 0)")
    ap.add_argument("--only", choices=["II", "III", "IV"], default=None, help="only this table's cells")
    ap.add_argument("--quick", action="store_true", help="1 seed, 3 cells, the tiny profile")
    ap.add_argument("--max-minutes", type=float, default=0.0, help="stop cleanly before this wall time (0: none)")
    ap.add_argument("--report-only", action="store_true", help="only rewrite the report from the cells on disk")
    ap.add_argument("--profile", default=None, help="settings profile (default bench; quick: tiny)")
    ap.add_argument("--data-root", type=Path, default=None, help="where the seeds' data go "
                    "(default <data_dir>/paper_tables/<profile>)")
    args = ap.parse_args(argv)
    args.profile = args.profile or ("tiny" if args.quick else "bench")
    args.seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    args.cells = cells_for(args.only, args.quick)
    return args


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    from eliverec.config import load_settings

    args = parse(argv)
    console = Console(stderr=True)
    started = time.time()
    facts = machine()
    data_root = args.data_root or Path(load_settings(args.profile).data_dir) / "paper_tables" / args.profile
    folder = RESULTS / "paper_tables" / args.profile
    planned = len(args.cells) * len(args.seeds)
    budget = args.max_minutes * 60.0
    longest = 0.0  # the longest cell so far: a cell starts only if one that long still fits the budget
    status = "finished"
    if args.report_only:
        report = write_report(args, folder, started, "report only (cells on disk)", planned, facts)
        console.print(f"{report['cells_finished']}/{planned} cells on disk; report rewritten")
        return 0
    write_report(args, folder, started, "running", planned, facts)
    for seed in args.seeds:
        settings = seed_settings(args.profile, seed, data_root / f"seed{seed}")
        sd = folder / f"seed{seed}"
        todo = [c for c in args.cells if not (sd / f"{cell_key(*c)}.json").is_file()]
        if not todo:
            continue
        if budget and time.time() - started + max(longest, 60.0) > budget:
            status = "stopped (--max-minutes)"
            break
        t0 = time.perf_counter()
        test_day = prepare(settings)
        ceil = seed_ceiling(settings, test_day, sd)
        console.print(f"seed {seed}: data ready in {time.perf_counter() - t0:.0f} s; oracle AUC "
                      f"{ceil['oracle_auc']:.4f}, policy AUC {ceil['policy_auc']:.4f}")
        for model, mtl in todo:
            if budget and time.time() - started + longest > budget:
                status = "stopped (--max-minutes)"
                break
            t1 = time.perf_counter()
            res = run_cell(settings, model, mtl, test_day, ceil)
            atomic_json(sd / f"{cell_key(model, mtl)}.json", res)
            last_cell = time.perf_counter() - t1
            longest = max(longest, last_cell)
            m = res["metrics"]
            console.print(f"seed {seed} {model} ({mtl}): AUC {m['auc']:.4f} gAUC {m['gauc']:.4f} "
                          f"gap {m['gap_closed/auc']} in {last_cell:.0f} s")
            write_report(args, folder, started, "running", planned, facts)
        if status != "finished":
            break
    report = write_report(args, folder, started, status, planned, facts)
    console.print(f"{report['cells_finished']}/{planned} cells; {status}; "
                  f"{RESULTS / ('paper_tables_quick' if args.quick else 'paper_tables')}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
