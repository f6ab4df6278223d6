"""Paired difference of every paper-table row between two runs of ``paper_tables.py`` (same seeds, same test days).

Two runs of the tables that differ only in ``--set`` values (for example the platform's match
features on and off) train every row on the same worlds and score the same test days, and their
bootstrap replicates use the same user draws per seed (``paper_tables.BOOT_SEED``). So the effect of
the setting on a row is a **paired** difference: per seed, row in run A minus the same row in run B
under every draw, combined over seeds exactly as the tables combine a row with ETA dual
(:func:`paper_tables.combine`). Only cells finished with the current settings fingerprint of each
run are compared.

Run: ``.venv/bin/python benchmarks/paper_tables_diff.py --b-set model.match_features=false
[--a-set ...] [--rows headline] [--seeds 0 1 2] [--data-root DIR] [--name match_features]``.
Writes ``benchmarks/results/paper_tables_diff_<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import paper_tables as pt  # sibling module: the scripts run as `python benchmarks/<name>.py`


def run_args(sets: list[str], rows: str, seeds: list[int] | None) -> argparse.Namespace:
    """The parsed arguments ``paper_tables.py`` would have for this run."""
    argv = ["--rows", rows, *[a for s in sets for a in ("--set", s)]]
    return pt.parse(argv + (["--seeds", *map(str, seeds)] if seeds else []))


def row_labels() -> dict[str, str]:
    """Cell key -> the tables' row label (first table it appears in)."""
    out: dict[str, str] = {}
    for _, group, label, model, mtl in pt.ROWS:
        out.setdefault(pt.cell_key(model, mtl), f"{group}: {label}" if group else label)
    return out


def compare(a: argparse.Namespace, b: argparse.Namespace, data_root: Path) -> list[dict[str, Any]]:
    """One record per cell finished in both runs: point values and the paired A - B per metric."""
    fa, fb = pt.fingerprints(a, data_root), pt.fingerprints(b, data_root)
    labels, rows = row_labels(), []
    for cell in [pt.cell_key(*c) for c in a.cells]:
        per_seed: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
        for seed in a.seeds:
            ra = pt.replicates_of(pt.RESULTS / "paper_tables" / a.run, seed, cell, fa[seed][cell], a.bootstrap)
            rb = pt.replicates_of(pt.RESULTS / "paper_tables" / b.run, seed, cell, fb[seed][cell], b.bootstrap)
            if ra is not None and rb is not None:
                per_seed[seed] = (ra, rb)
        if not per_seed:
            continue
        rec: dict[str, Any] = {"cell": cell, "row": labels.get(cell, cell), "seeds": sorted(per_seed)}
        for m in pt.PAIRED:
            rec[f"{m}_a"] = pt._stat([ra[f"{m}_point"] for ra, _ in per_seed.values()])
            rec[f"{m}_b"] = pt._stat([rb[f"{m}_point"] for _, rb in per_seed.values()])
            rec[f"{m}/a_minus_b"] = pt.combine(per_seed, m)
        rows.append(rec)
    return rows


def markdown(name: str, a: argparse.Namespace, b: argparse.Namespace, rows: list[dict[str, Any]]) -> str:
    def ci(c: dict[str, Any]) -> str:
        return f"{c['diff']:+.4f} [{c['lo']:+.4f}, {c['hi']:+.4f}]"

    head = (f"# Paper-table rows, run A minus run B ({name})\n\nA: `{a.run}` (--set {a.set or 'none'}); "
            f"B: `{b.run}` (--set {b.set or 'none'}). Same worlds, same test days, same user-level bootstrap "
            f"draws ({a.bootstrap} per seed); the interval is the percentile interval of the seed-averaged "
            "paired replicate differences (as in `paper_tables.md`); `sig.` only when it excludes 0.\n\n"
            "| row | n | AUC A | AUC B | Δ AUC A-B [95% CI] | sig. | gAUC A | gAUC B | Δ gAUC A-B [95% CI] | sig. |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
    body = "".join(
        f"| {r['row']} | {len(r['seeds'])} | {r['auc_a']['mean']:.4f} | {r['auc_b']['mean']:.4f} | "
        f"{ci(r['auc/a_minus_b'])} | {r['auc/a_minus_b']['sig']} | {r['gauc_a']['mean']:.4f} | "
        f"{r['gauc_b']['mean']:.4f} | {ci(r['gauc/a_minus_b'])} | {r['gauc/a_minus_b']['sig']} |\n"
        for r in rows)
    return head + body


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a-set", action="append", default=[], metavar="KEY=VALUE", help="run A's --set values")
    ap.add_argument("--b-set", action="append", default=[], metavar="KEY=VALUE", help="run B's --set values")
    ap.add_argument("--rows", choices=["all", "headline"], default="headline")
    ap.add_argument("--seeds", type=int, nargs="+", default=None)
    ap.add_argument("--data-root", type=Path, required=True, help="the seeds' data (as given to paper_tables.py)")
    ap.add_argument("--name", default="diff", help="suffix of the result files")
    args = ap.parse_args(argv)
    a, b = run_args(args.a_set, args.rows, args.seeds), run_args(args.b_set, args.rows, args.seeds)
    if a.run == b.run:
        ap.error("run A and run B are the same run: give different --a-set / --b-set values")
    rows = compare(a, b, args.data_root)
    if not rows:
        print("no cell is finished in both runs", file=sys.stderr)
        return 1
    out = pt.RESULTS / f"paper_tables_diff_{args.name}"
    pt.atomic_json(out.with_suffix(".json"), {"a": {"run": a.run, "set": a.set}, "b": {"run": b.run, "set": b.set},
                                              "bootstrap": a.bootstrap, "rows": rows})
    out.with_suffix(".md").write_text(markdown(args.name, a, b, rows))
    print(json.dumps({"rows": len(rows), "written": str(out.with_suffix(".md"))}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
