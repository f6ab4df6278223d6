"""How should the feed position enter the model? ``model.position_bias`` input vs additive vs pal.

The logged position carries the logging policy's ranking; serving scores every candidate at one
fixed position. Three ways to learn with the position (``eliverec/models/base.py``):

- ``input``: the position embedding is one more input of the watch tower (the landed design);
- ``additive``: a per-position logit added to the tower's logit (a shallow position tower);
- ``pal``: ``p(watch) = sigmoid(b_position) * sigmoid(relevance)``, the examination hypothesis (PAL).

For each mode this runs the paper-table cells of ETA dual, HGN dual and eLiveRec on seed 0 of the
``bench`` world (``benchmarks/paper_tables.py --set model.position_bias=MODE``: resumable, the cells
stay on disk) and tabulates the **validation** AUC at the serving position (what the choice is made
on: the tail of the training days) beside the test-day AUC (reported, not used to choose).

Run: ``.venv/bin/python benchmarks/position_bias.py``; writes ``benchmarks/results/position_bias.{json,md}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
MODES = ("input", "additive", "pal")
MODELS = ("eta_dual", "hgn_dual", "eliverec")


def run_mode(mode: str) -> Path:
    """Run (or resume) the cells of one mode; the folder of its cells."""
    import paper_tables  # sibling script

    sets = [f"model.position_bias={mode}"]
    argv = ["--seeds", "0", "--rows", "headline", "--models", *MODELS, "--bootstrap", "500"]
    for s in sets:
        argv += ["--set", s]
    paper_tables.main(argv)
    return RESULTS / "paper_tables" / f"bench-{paper_tables.fingerprint(sorted(sets))[:8]}" / "seed0"


def collect(folder: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for model in MODELS:
        cell = next(folder.glob(f"{model}__*.json"))
        d = json.loads(cell.read_text())
        out[model] = {"val_auc": d["val_auc"], "test_auc": d["metrics"]["auc"],
                      "test_auc_logged_pos": d["metrics"].get("logged_pos/auc"), "steps": d["steps"],
                      "stop_reason": d["stop_reason"]}
    return out


def markdown(res: dict[str, Any]) -> str:
    lines = ["# Position bias: input vs additive vs PAL", "",
             "Seed 0 of the `bench` world; AUC at the serving position. The choice is made on the validation "
             "AUC (tail of the training days); the test day is shown, not used.", "",
             "| mode | " + " | ".join(f"{m} val | {m} test" for m in MODELS) + " | mean val |",
             "| --- |" + " --- | --- |" * len(MODELS) + " --- |"]
    for mode, cells in res["modes"].items():
        vals = [cells[m]["val_auc"] for m in MODELS]
        lines.append(f"| {mode} | " + " | ".join(f"{cells[m]['val_auc']:.4f} | {cells[m]['test_auc']:.4f}"
                                                  for m in MODELS) + f" | {sum(vals) / len(vals):.4f} |")
    lines += ["", f"Chosen (highest mean validation AUC): **{res['chosen']}**."]
    return "\n".join(lines) + "\n"


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    modes = {m: collect(run_mode(m)) for m in MODES}
    chosen = max(modes, key=lambda m: sum(c["val_auc"] for c in modes[m].values()))
    res = {"modes": modes, "chosen": chosen, "seed": 0, "profile": "bench"}
    (RESULTS / "position_bias.json").write_text(json.dumps(res, indent=2))
    (RESULTS / "position_bias.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
