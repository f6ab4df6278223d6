"""eLiveRec and the baselines on logs we did not generate: real room entries, imported by the platform.

The logs are the DRIVER live-streaming sample (``../shared/data/real/driver``: 87,906 room entries of
17,406 users in 677 rooms over 21 days; see its PROVENANCE.md), optionally with the head of Taobao's
UserBehavior log as the product domain (``--mapping mappings/driver_taobao.yaml --products ...``;
that mapping pairs the two logs' users by activity rank, an artificial link, said in the report).
Nothing here is simulated: the impressions are derived by the import (the entered room plus up to 4
rooms with an entry within 30 minutes, in a random feed order; ``mappings/driver.yaml``), then the
platform's own stages run on them: ``import_logs`` -> ``ingest_day`` per day -> ``build_features``
for the last day (the test day) with the ``--train-days`` days before it.

Every model trains the same way (:func:`eliverec.training.trainer.train`: early stopping on the
validation tail of the training days, ``train.max_minutes`` per model, the profile's settings; no
tuning on these logs) and scores the test day at its serving position (the feed order of derived
impressions is random, so the logged position carries no label). Four references need no network:

- ``popularity``: the room's entries in the training window (what a non-personal ranker would show);
- ``recent``: the room's entries by anyone in the hour before the impression (what is hot right now);
- ``repeat``: the user's own earlier entries into that room (training window and test day, strictly
  before the impression), ties broken by popularity: the usual strong baseline on live-streaming
  logs, where people return to the rooms they know;
- ``trees``: the paper tables' feature-trees reference, gradient-boosted trees on the user-candidate
  match counts and the room's live context (viewers, age of its stats), fitted on the training days:
  what a few hand-made features hold (:mod:`eliverec.evaluation.reference`).

Statistics: the test day's users (raw ids, not hashed ones) are resampled with
replacement ``--bootstrap`` times, the same draws for every model and reference
(:func:`eliverec.evaluation.gate.user_draws`), and each model's AUC and gAUC are recomputed under
every draw; a difference is ``above`` / ``below`` only when its 95 % percentile interval excludes 0.
Seeds change the models' initialisation and batch order, not the data; the user draws are the same on
every seed, so with several seeds the combined interval is that of the seed-averaged replicate
differences (it covers the users' sampling noise given the trained models; the per-seed column shows
the training noise).

Run: ``python benchmarks/real_logs.py --seeds 0 1`` (about 13 minutes a seed on 2 cores); results in
``benchmarks/results/real_logs_<mapping>.{json,md}``. Data and checkpoints go under
``data/real_logs/<mapping>/`` (git-ignored; the logs themselves are not copied into the repository).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model  # noqa: E402
from paper_tables import significance  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real"
RESULTS = REPO / "benchmarks" / "results"
MODELS = ["eliverec", "eta_dual", "din_dual", "wdl_dual"]
REFERENCES = ["popularity", "recent", "repeat", "trees"]
RECENT_MS = 3_600_000  # the "recent" reference counts a room's entries in the hour before the impression
CONFIDENCE = 0.95
BOOT_SEED = 0  # the user draws' seed, the same for every training seed (paired across seeds too)


# ------------------------------------------------------------------------------------------------ data
def _next_prime(n: int) -> int:
    """The smallest prime >= ``n`` (hashed vocabulary sizes, as in ``params.yaml``).

    >>> _next_prime(20000), _next_prime(2)
    (20011, 2)
    """
    k = max(2, n)
    while any(k % d == 0 for d in range(2, int(k**0.5) + 1)):
        k += 1
    return k


def _digest(paths: list[Path], extra: Any) -> str:
    """Names, sizes and contents' hashes of the input files, plus ``extra`` (settings)."""
    h = hashlib.sha256(json.dumps(extra, sort_keys=True, default=str).encode())
    for p in paths:
        h.update(f"{p.name}:{p.stat().st_size}".encode())
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()[:16]


def code_version() -> str:
    """The git tree of ``eliverec/`` (plus a digest of its uncommitted changes): cached data and scores of
    other code are not reused. ``unknown`` outside a git checkout."""
    import subprocess

    def git(*cmd: str) -> str:
        return subprocess.run(["git", *cmd], cwd=REPO, capture_output=True, text=True, check=True).stdout

    try:
        tree = git("rev-parse", "HEAD:eliverec").strip()
        dirty = git("diff", "HEAD", "--", "eliverec")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return tree[:12] + (f"+{hashlib.sha256(dirty.encode()).hexdigest()[:8]}" if dirty else "")


def settings_for(args: argparse.Namespace, root: Path, seed: int, vocab: dict[str, int] | None = None) -> Any:
    """The profile's settings on this data root, with the benchmark's own MLflow store and no model logging."""
    from eliverec.config import load_settings

    sets = [*args.set, f"seed={seed}", f"features.train_days={args.train_days}",
            f"tracking.uri=sqlite:///{root}/mlflow.db", "tracking.log_model=false", "tracking.experiment=real-logs",
            f"train.max_minutes={args.max_minutes}"]
    sets += [f"features.vocab.{k}={v}" for k, v in (vocab or {}).items()]
    return load_settings(args.profile, overrides=sets, data_dir=root / "data")


def prepare(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Import, ingest and feature the logs once (again when the inputs or settings change); the facts."""
    from eliverec.data.importer import import_logs
    from eliverec.data.ingest import ingest_day
    from eliverec.features.build import build_features

    inputs = [p for p in (args.live, args.products, args.mapping) if p is not None]
    for p in inputs:
        if not p.is_file():
            raise SystemExit(f"{p}: not found. The real samples live in ../shared/data/real (see its README); "
                             "give --live/--products/--mapping paths that exist")
    fp = _digest(inputs, {"train_days": args.train_days, "profile": args.profile, "set": args.set,
                          "code": code_version()})
    done = root / "_prepared.json"
    if done.is_file() and json.loads(done.read_text()).get("fingerprint") == fp:
        return json.loads(done.read_text())
    if root.exists() and any(root.iterdir()) and not done.is_file():
        raise SystemExit(f"{root}: exists and was not made by this benchmark (no _prepared.json); "
                         "give a new or empty --data-root (this one would be replaced)")
    if root.exists():
        shutil.rmtree(root)  # this benchmark's own data of other inputs, settings or code
    plain = settings_for(args, root, 0)
    summary = import_logs(plain, live=args.live, products=args.products, mapping=args.mapping)
    vocab = {"user": _next_prime(2 * int(summary["users"]) + 1),
             "channel": max(plain.features.vocab["channel"], _next_prime(2 * int(summary["channels"]) + 1))}
    if summary.get("products"):
        vocab["product"] = max(plain.features.vocab["product"], _next_prime(2 * int(summary["products"]) + 1))
    s = settings_for(args, root, 0, vocab)
    shown = {date: ingest_day(s, date)["tables"]["impression"]["rows"] or 0 for date in summary["dates"]}
    days = [d for d, n in shown.items() if n > 0]
    if len(days) < 2:
        raise SystemExit(f"{args.live}: impressions on {len(days)} day(s) after the import; the benchmark needs "
                         "training days and a test day")
    test_day = days[-1]  # room stats may run past the last entry
    build = build_features(s, test_day)
    info = {"fingerprint": fp, "test_day": test_day, "dates": [d for d in summary["dates"] if d <= test_day],
            "vocab": vocab,
            "import": {k: summary[k] for k in ("events", "derived", "dropped", "users", "channels", "products")
                       if k in summary},
            "train_rows": build["train_rows"], "test_rows": build["test_rows"], "train_days": build.get("train_days")}
    done.write_text(json.dumps(info, indent=2, default=str))
    return info


def day_rows(settings: Any, test_day: str) -> Any:
    """The test day's rows in tensor order: raw user id, room, time, label (``samples.parquet``)."""
    import pandas as pd

    from eliverec.features.dataset import load_days

    test = load_days(settings.data_dir, [test_day])
    rows = pd.read_parquet(settings.layout.samples(test_day), columns=["user_id", "channel_id", "ts", "watch"])
    if not np.array_equal(rows["watch"].to_numpy() > 0, test.column("watch") > 0):
        raise RuntimeError(f"{test_day}: samples.parquet and the tensors disagree on the labels")
    return rows, test


def references(settings: Any, info: dict[str, Any], rows: Any, test: Any) -> dict[str, np.ndarray]:
    """Scores of the untrained references for the test rows (module docstring)."""
    import pandas as pd

    days = [d for d in info["dates"] if d < info["test_day"]][-int(settings.features.train_days):]
    window = pd.concat([pd.read_parquet(settings.layout.samples(d), columns=["user_id", "channel_id", "ts", "watch"])
                        for d in days], ignore_index=True)
    seen = window[window["watch"] > 0]
    pop = rows["channel_id"].map(seen["channel_id"].value_counts()).fillna(0).to_numpy(np.float64)
    history = pd.concat([seen, rows[rows["watch"] > 0]], ignore_index=True)
    tie = pop / (pop.max() + 1.0)  # < 1: orders only rows with equal counts
    return {"popularity": pop,
            "recent": _earlier(history, rows, ["channel_id"], RECENT_MS) + tie,
            "repeat": _earlier(history, rows, ["user_id", "channel_id"]) + tie,
            "trees": _trees(settings, days, test, settings.seed)}


def _trees(settings: Any, days: list[str], test: Any, seed: int) -> np.ndarray:
    """The paper tables' feature-trees reference (:mod:`eliverec.evaluation.reference`): gradient-boosted
    trees on the user-candidate match counts and the room's live context, fitted on the training days."""
    from eliverec.evaluation.reference import INPUT_KEYS, tree_scores
    from eliverec.features.dataset import load_days

    keys = (*INPUT_KEYS, "watch")
    train = load_days(settings.data_dir, days)
    return tree_scores({k: train.column(k) for k in keys}, {k: test.column(k) for k in keys}, seed)


def _earlier(history: Any, rows: Any, keys: list[str], window_ms: int | None = None) -> np.ndarray:
    """Per row, the entries of ``history`` with the row's ``keys`` strictly before the row's time, and
    within ``window_ms`` of it when given (vectorised: one sort and two binary searches)."""
    import pandas as pd

    both = pd.concat([history[keys], rows[keys]], ignore_index=True)
    codes = pd.factorize(pd.MultiIndex.from_frame(both) if len(keys) > 1 else both[keys[0]])[0].astype(np.int64)
    h_code, r_code = codes[: len(history)], codes[len(history):]
    reach = window_ms or 0
    t0 = min(int(history["ts"].min()), int(rows["ts"].min())) - reach - 1  # keeps row - window in the row's block
    span = int(max(history["ts"].max(), rows["ts"].max())) - t0 + 1
    h = np.sort(h_code * span + (history["ts"].to_numpy(np.int64) - t0))
    r = r_code * span + (rows["ts"].to_numpy(np.int64) - t0)
    start = r - window_ms if window_ms else r_code * span
    return (np.searchsorted(h, r, side="left") - np.searchsorted(h, start, side="left")).astype(np.float64)


# ------------------------------------------------------------------------------------------------ models
def train_and_score(settings: Any, model: str, test_day: str, test: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """Train ``model`` on the window before ``test_day``; its watch scores at the serving position, its facts."""
    import torch

    from eliverec.evaluation.probe import load_trained
    from eliverec.scoring.scores import at_position, predict
    from eliverec.training.trainer import train, with_model

    t0 = time.perf_counter()
    result = train(with_model(settings, model), model_name=model, end_date=test_day,
                   run_name=f"{model}-seed{settings.seed}")
    net = load_trained(result.checkpoint_dir)
    scores = predict(net, at_position(test, int(net.cfg.serve_position)), settings.evaluation.batch_size,
                     torch.device("cpu"))["watch"].astype(np.float64)
    return scores, {"steps": result.steps, "stop_reason": result.stop_reason, "val_auc": result.metrics.get("val/auc"),
                    "seconds": round(time.perf_counter() - t0, 1)}


def cached_scores(settings: Any, model: str, info: dict[str, Any], test: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """:func:`train_and_score`, kept beside the data (``scores/<model>-seed<k>-<fingerprint>.npz``), so a
    report with other references or draws reuses trained models; the key is the data, the settings and
    :func:`code_version`."""
    tree = with_model_tree(settings, model)
    parts = [info["fingerprint"], tree, code_version()]
    key = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]
    path = Path(settings.data_dir).parent / "scores" / f"{model}-seed{settings.seed}-{key}.npz"
    if path.is_file():
        with np.load(path) as z:
            return z["scores"], json.loads(str(z["facts"]))
    print(f"seed {settings.seed}: training {model}", flush=True)
    scores, facts = train_and_score(settings, model, info["test_day"], test)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, scores=scores, facts=np.str_(json.dumps(facts)))
    return scores, facts


def with_model_tree(settings: Any, model: str) -> dict[str, Any]:
    """The sections a model's result depends on (model, train, features, seed), as plain data."""
    from eliverec.training.trainer import with_model

    tree = with_model(settings, model).section_dict()
    return {k: tree[k] for k in ("seed", "model", "train", "features")}


# ------------------------------------------------------------------------------------------------ statistics
def metrics_of(rows: Any, scores: np.ndarray, draws: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    """AUC, gAUC (point and bootstrap replicates), Prec@10 and NDCG@10 of one score vector."""
    from eliverec.evaluation.gate import replicates
    from eliverec.scoring.metrics import topk_metrics

    codes, resampled = draws
    watch = rows["watch"].to_numpy() > 0
    reps = replicates(codes, resampled, watch, scores)
    prec, ndcg = topk_metrics(codes, watch, scores, 10)
    return {"auc": reps["auc"][0], "gauc": reps["gauc"][0], "prec@10": prec, "ndcg@10": ndcg,
            "_reps": {k: v[1] for k, v in reps.items()}}


def paired(a: dict[str, Any], b: dict[str, Any], metric: str) -> dict[str, Any]:
    """``a - b`` of ``metric`` with its paired percentile interval and a verdict."""
    from eliverec.evaluation.gate import percentile_interval

    lo, hi = percentile_interval(a["_reps"][metric] - b["_reps"][metric], CONFIDENCE)
    return {"diff": float(a[metric] - b[metric]), "lo": lo, "hi": hi, "verdict": significance(lo, hi)}


def markdown(report: dict[str, Any]) -> str:
    """The report as a short markdown page."""
    info, m = report["data"], report["machine"]
    lines = [f"# Real logs: {report['mapping']}", "",
             f"{info['import']['users']:,} users, {info['import']['channels']:,} rooms, days {info['dates'][0]}.."
             f"{info['dates'][-1]}; test day {info['test_day']} ({info['test_rows']:,} impressions), "
             f"{info['train_rows']:,} training impressions from the {report['train_days']} days before it. "
             f"Profile `{report['profile']}`, `train.max_minutes={report['max_minutes']}`, "
             f"{report['bootstrap']} user draws, {m['cores']} cores ({m['cpu_model']}), code {report['commit']}.", ""]
    if report.get("note"):
        lines += [report["note"], ""]
    if report.get("combined"):
        lines += [f"## All {len(report['seeds'])} seeds (mean difference; interval of the seed-averaged draws)", "",
                  "| comparison | metric | difference | 95 % interval | verdict | per seed |",
                  "| --- | --- | ---: | --- | --- | --- |"]
        for c in report["combined"]:
            lines.append(f"| {c['a']} - {c['b']} | {c['metric']} | {c['diff']:+.4f} | [{c['lo']:+.4f}, "
                         f"{c['hi']:+.4f}] | {c['verdict']} | {', '.join(f'{d:+.4f}' for d in c['per_seed'])} |")
        lines.append("")
    for seed, block in report["seeds"].items():
        lines += [f"## Seed {seed}", "", "| model | AUC | gAUC | Prec@10 | NDCG@10 | steps | stopped by | train s |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
        for name, r in block["rows"].items():
            f = r.get("training", {})
            lines.append(f"| {name} | {r['auc']:.4f} | {r['gauc']:.4f} | {r['prec@10']:.4f} | {r['ndcg@10']:.4f} | "
                         f"{f.get('steps', '')} | {f.get('stop_reason', '')} | {f.get('seconds', '')} |")
        lines += ["", "| comparison | metric | difference | 95 % interval | verdict |",
                  "| --- | --- | ---: | --- | --- |"]
        for c in block["pairs"]:
            lines.append(f"| {c['a']} - {c['b']} | {c['metric']} | {c['diff']:+.4f} | [{c['lo']:+.4f}, {c['hi']:+.4f}] "
                         f"| {c['verdict']} |")
        lines.append("")
    return "\n".join(lines)


def _git_commit() -> str:
    from eliverec.pipeline import git_commit

    return git_commit()


def run_seed(args: argparse.Namespace, root: Path, info: dict[str, Any], seed: int) -> dict[str, Any]:
    """Every model and reference on one seed, and their paired comparisons."""
    from eliverec.evaluation.gate import user_draws

    s = settings_for(args, root, seed, info["vocab"])
    rows, test = day_rows(s, info["test_day"])
    draws = user_draws(rows["user_id"].to_numpy(), args.bootstrap, BOOT_SEED)  # the same draws on every seed
    out: dict[str, dict[str, Any]] = {}
    for name, scores in references(s, info, rows, test).items():
        out[name] = metrics_of(rows, scores, draws)
    for model in args.models:
        scores, facts = cached_scores(s, model, info, test)
        out[model] = {**metrics_of(rows, scores, draws), "training": facts}
    pairs = [{"a": a, "b": b, "metric": metric, **paired(out[a], out[b], metric)}
             for a, b in comparisons(args.models) for metric in ("auc", "gauc")]
    rows_out = {k: {kk: vv for kk, vv in v.items() if kk != "_reps"} for k, v in out.items()}
    return {"rows": rows_out, "pairs": pairs, "users": int(rows["user_id"].nunique()),
            "_reps": {k: v["_reps"] for k, v in out.items()}}


def comparisons(models: list[str]) -> list[tuple[str, str]]:
    """Every model against every reference; the first model (eLiveRec) against every other model; the others
    against ETA dual (the paper's online baseline).

    >>> comparisons(["eliverec", "eta_dual", "wdl_dual"])[-3:]
    [('wdl_dual', 'repeat'), ('wdl_dual', 'trees'), ('wdl_dual', 'eta_dual')]
    """
    out = []
    for i, a in enumerate(models):
        rivals = models[1:] if i == 0 else [m for m in models[1:] if m == "eta_dual" and m != a]
        out += [(a, b) for b in [*REFERENCES, *rivals]]
    return out


def combined(seeds: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every seed's pairs averaged over seeds: the mean difference and the percentile interval of the
    seed-averaged replicate differences (the draws are the same users on every seed, so draw b of every
    seed is averaged: the bootstrap distribution of the mean over seeds, given the trained models)."""
    from eliverec.evaluation.gate import percentile_interval

    first = next(iter(seeds.values()))
    out = []
    for p in first["pairs"]:
        a, b, metric = p["a"], p["b"], p["metric"]
        diffs = [blk["rows"][a][metric] - blk["rows"][b][metric] for blk in seeds.values()]
        reps = np.mean([blk["_reps"][a][metric] - blk["_reps"][b][metric] for blk in seeds.values()], axis=0)
        lo, hi = percentile_interval(reps, CONFIDENCE)
        out.append({"a": a, "b": b, "metric": metric, "diff": float(np.mean(diffs)), "lo": lo, "hi": hi,
                    "verdict": significance(lo, hi),
                    "per_seed": [float(d) for d in diffs]})
    return out


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mapping", type=Path, default=REPO / "mappings" / "driver.yaml")
    ap.add_argument("--live", type=Path, default=REAL / "driver" / "interactions.csv")
    ap.add_argument("--products", type=Path, default=None, help="product log (with a two-domain mapping)")
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--train-days", type=int, default=14, help="days before the test day that train (default 14)")
    ap.add_argument("--max-minutes", type=float, default=5.0, help="train.max_minutes per model")
    ap.add_argument("--bootstrap", type=int, default=1000, help="user draws per seed")
    ap.add_argument("--profile", default="default")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="settings override")
    ap.add_argument("--data-root", type=Path, default=None, help="default data/real_logs/<mapping name>")
    ap.add_argument("--note", default="", help="a sentence for the report (e.g. the machine's load)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="folder of real_logs_<mapping>[_<tag>].{json,md}")
    ap.add_argument("--tag", default="", help="suffix of the result files (a variant run)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import os

    import torch

    args = parse(argv)
    name = args.mapping.stem
    root = (args.data_root or REPO / "data" / "real_logs" / name).resolve()
    t0 = time.perf_counter()
    info = prepare(args, root)
    report: dict[str, Any] = {
        "mapping": name, "tag": args.tag, "models": args.models, "live": str(args.live),
        "products": str(args.products) if args.products else None,
        "profile": args.profile, "set": args.set, "train_days": args.train_days, "max_minutes": args.max_minutes,
        "bootstrap": args.bootstrap, "commit": _git_commit(), "note": args.note, "data": info,
        "machine": {"cores": os.cpu_count(), "cpu_model": cpu_model(), "torch": torch.__version__,
                    "load_avg_at_start": os.getloadavg()},
        "seeds": {}}
    for seed in args.seeds:
        report["seeds"][str(seed)] = run_seed(args, root, info, seed)
    if len(args.seeds) > 1:
        report["combined"] = combined(report["seeds"])
    for block in report["seeds"].values():
        block.pop("_reps")
    report["seconds"] = round(time.perf_counter() - t0, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"real_logs_{name}" + (f"_{args.tag}" if args.tag else "")
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
