"""A/B analysis of what the service served: per-variant metrics, user-level intervals, SRM.

Input: the service's raw logs ``<data_dir>/raw/<date>/events-serving-*.jsonl`` (impressions with
``variant``; the feedback events posted to ``/events`` beside them), joined on
``(request_id, channel_id)``. The randomisation unit is the user, so every metric is a ratio of
per-user sums, and its variance comes from the **delta method** over users (Deng, Knoblich and Lu,
2018): for ``R = sum(x) / sum(y)`` over ``n`` users,
``Var(R) ~ (s_x^2 - 2 R s_xy + R^2 s_y^2) / (n * mean(y)^2)``. Variants are compared with a
two-sided **z-test on the difference of the ratios** (independent groups, variances added) and a
delta-method interval for the relative lift. The **sample-ratio-mismatch** check is Pearson's
chi-square test of users per variant against the allocation's shares.

Metrics (numerator / denominator per user): ``ctr`` enters / impressions, ``watch_rate`` watches
(stay >= ``features.min_stay_ms``) / impressions, ``stay_time`` stay seconds / enters,
``goods_bag_ctr`` goods-bag opens / enters, ``product_ctr`` in-channel product clicks / enters,
``conversion`` feeds with a product click / feeds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
from scipy import stats as sps

from eliverec.config import Settings
from eliverec.data.atomic import write_bytes_atomic
from eliverec.layout import DataLayout, output_files, serving_log_name

METRICS: dict[str, tuple[str, str]] = {
    "ctr": ("enters", "impressions"),
    "watch_rate": ("watches", "impressions"),
    "stay_time": ("stay_s", "enters"),
    "goods_bag_ctr": ("goods_bag", "enters"),
    "product_ctr": ("product_click", "enters"),
    "conversion": ("converted", "requests"),
}
TEST_NAME = "two-sided z-test on user-level ratio metrics, delta-method variance"
SRM_TEST = "Pearson chi-square goodness of fit of users per variant vs. allocation"
OUTCOMES = ("enter", "leave", "goods_bag_click", "channel_product_click")


# ---------------------------------------------------------------------------------------------- reading
def serving_files(data_dir: Path, dates: Iterable[str] | None = None) -> list[Path]:
    """The service's log files, oldest date first."""
    raw = DataLayout(Path(data_dir)).raw()
    wanted = set(dates) if dates else None
    return sorted(p for p in raw.glob(f"*/{serving_log_name('*')}") if wanted is None or p.parent.name in wanted)


def read_since(files: Iterable[Path], cursor: Mapping[str, int] | None = None) -> tuple[list[dict[str, Any]],
                                                                                       dict[str, int]]:
    """Rows appended after ``cursor`` (file -> byte offset; whole lines only) and the new cursor."""
    rows: list[dict[str, Any]] = []
    new: dict[str, int] = dict(cursor or {})
    for path in files:
        start = int(new.get(str(path), 0))
        with path.open("rb") as fh:
            fh.seek(start)
            data = fh.read()
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next read
        rows += [orjson.loads(line) for line in data[:end].splitlines() if line.strip()]
        new[str(path)] = start + end
    return rows, new


def cursor_now(data_dir: Path) -> dict[str, int]:
    """A cursor at the end of every serving file (what a ramp stage starts from)."""
    return {str(p): p.stat().st_size for p in serving_files(data_dir)}


def user_table(rows: list[dict[str, Any]], min_stay_ms: int) -> pd.DataFrame:
    """Per (user, variant): impressions, enters, watches, stay seconds, goods bag, product clicks, feeds."""
    cols = ["user_id", "variant", *{n for pair in METRICS.values() for n in pair}]
    imp = pd.DataFrame([r for r in rows if r.get("event") == "impression" and r.get("variant")])
    if imp.empty:
        return pd.DataFrame(columns=cols)
    imp = imp.drop_duplicates("event_id")[["user_id", "request_id", "channel_id", "variant"]]
    ev = pd.DataFrame([r for r in rows if r.get("event") in OUTCOMES],
                      columns=["event", "event_id", "request_id", "channel_id", "stay_ms"])
    ev = ev.drop_duplicates("event_id")
    key = ["request_id", "channel_id"]
    per = pd.DataFrame({
        "enters": ev[ev.event == "enter"].groupby(key).size(),
        "stay_ms": ev[ev.event == "leave"].groupby(key)["stay_ms"].sum(),
        "goods_bag": ev[ev.event == "goods_bag_click"].groupby(key).size(),
        "product_click": ev[ev.event == "channel_product_click"].groupby(key).size(),
    }).fillna(0.0)
    x = imp.merge(per, how="left", left_on=key, right_index=True).fillna(
        {"enters": 0.0, "stay_ms": 0.0, "goods_bag": 0.0, "product_click": 0.0})
    x["enters"] = (x["enters"] > 0).astype(float)
    x["watches"] = (x["stay_ms"] >= min_stay_ms).astype(float)
    x["stay_s"] = x["stay_ms"] / 1000.0
    x["goods_bag"] = (x["goods_bag"] > 0).astype(float)
    x["product_click"] = (x["product_click"] > 0).astype(float)
    feeds = x.groupby(["user_id", "variant", "request_id"])["product_click"].max().reset_index()
    feeds = feeds.groupby(["user_id", "variant"]).agg(requests=("request_id", "size"),
                                                      converted=("product_click", "sum"))
    users = x.groupby(["user_id", "variant"]).agg(
        impressions=("channel_id", "size"), enters=("enters", "sum"), watches=("watches", "sum"),
        stay_s=("stay_s", "sum"), goods_bag=("goods_bag", "sum"), product_click=("product_click", "sum"))
    return users.join(feeds).reset_index()


# ---------------------------------------------------------------------------------------------- statistics
def ratio_stats(x: np.ndarray, y: np.ndarray) -> tuple[float, float, int]:
    """``(R, Var(R), n)`` of the ratio metric ``sum(x) / sum(y)`` over users (delta method).

    >>> r, v, n = ratio_stats(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 2.0]))
    >>> round(r, 3), round(v, 4), n
    (1.0, 0.0833, 3)
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = int(x.size)
    if n < 2 or y.sum() <= 0:
        return float("nan"), float("nan"), n
    r = x.sum() / y.sum()
    cov = np.cov(x, y, ddof=1)
    var = (cov[0, 0] - 2 * r * cov[0, 1] + r * r * cov[1, 1]) / (n * y.mean() ** 2)
    return float(r), float(max(var, 0.0)), n


def compare(a: tuple[float, float, int], b: tuple[float, float, int], alpha: float) -> dict[str, float]:
    """B vs A (challenger vs champion): difference, relative lift, CIs at ``1 - alpha``, z and p-values."""
    (ra, va, _), (rb, vb, _) = a, b
    z_crit = float(sps.norm.ppf(1 - alpha / 2))
    diff, se = rb - ra, float(np.sqrt(va + vb))
    z = diff / se if se > 0 else float("nan")
    lift = diff / ra if ra else float("nan")
    se_lift = float(np.sqrt(vb / ra**2 + rb**2 * va / ra**4)) if ra else float("nan")
    return {"champion": ra, "challenger": rb, "difference": diff, "ci_low": diff - z_crit * se,
            "ci_high": diff + z_crit * se, "relative_lift": lift, "lift_ci_low": lift - z_crit * se_lift,
            "lift_ci_high": lift + z_crit * se_lift, "z": z,
            "p_value": float(2 * sps.norm.sf(abs(z))) if np.isfinite(z) else float("nan"),
            "p_loss": float(sps.norm.cdf(z)) if np.isfinite(z) else float("nan")}


def srm(users: Mapping[str, int], share_challenger: float) -> dict[str, Any]:
    """Chi-square sample-ratio-mismatch test of user counts against the challenger's share."""
    obs = np.array([users.get("champion", 0), users.get("challenger", 0)], float)
    exp_share = np.array([1 - share_challenger, share_challenger])
    keep = exp_share > 0
    if obs.sum() == 0 or keep.sum() < 2:
        return {"test": SRM_TEST, "chi2": 0.0, "p_value": 1.0, "observed": obs.tolist(),
                "expected_share": exp_share.tolist()}
    chi2, p = sps.chisquare(obs[keep], obs.sum() * exp_share[keep])
    return {"test": SRM_TEST, "chi2": float(chi2), "p_value": float(p), "observed": obs.tolist(),
            "expected_share": exp_share.tolist()}


def analyse(table: pd.DataFrame, alpha: float, share_challenger: float) -> dict[str, Any]:
    """Per-variant metrics and the challenger-vs-champion comparison of a :func:`user_table`."""
    variants: dict[str, Any] = {}
    ratios: dict[str, dict[str, tuple[float, float, int]]] = {}
    for v in ("champion", "challenger"):
        part = table[table["variant"] == v]
        ratios[v] = {m: ratio_stats(part[num].to_numpy(), part[den].to_numpy()) for m, (num, den) in METRICS.items()}
        variants[v] = {"users": int(len(part)), "impressions": int(part["impressions"].sum()) if len(part) else 0,
                       "requests": int(part["requests"].sum()) if len(part) else 0,
                       "metrics": {m: {"value": r, "se": float(np.sqrt(var)) if np.isfinite(var) else float("nan")}
                                   for m, (r, var, _) in ratios[v].items()}}
    comparison = {m: compare(ratios["champion"][m], ratios["challenger"][m], alpha) for m in METRICS}
    counts = {v: variants[v]["users"] for v in variants}
    return {"variants": variants, "comparison": comparison, "srm": srm(counts, share_challenger), "test": TEST_NAME,
            "alpha": alpha, "users": int(sum(counts.values())),
            "impressions": int(sum(v["impressions"] for v in variants.values()))}


# ---------------------------------------------------------------------------------------------- report
def ab_report(settings: Settings, dates: list[str] | None = None, out_dir: Path | None = None,
              share_challenger: float | None = None) -> dict[str, Any]:
    """Analyse the served logs of ``dates`` (default: all) and write ``report.json``, ``report.md``, ``report.png``.

    Output folder: ``<data_dir>/experiments/<ab.experiment>/`` unless ``out_dir``. The SRM check uses
    ``share_challenger`` (default: the stored allocation's share).
    """
    from eliverec.serving.buckets import allocation_path, load_allocation, with_share

    ab = settings.ab
    if share_challenger is None:
        default = with_share(ab.experiment, ab.salt, ab.buckets, 0.0)
        share_challenger = load_allocation(allocation_path(settings.data_dir), default).share("challenger")
    files = serving_files(settings.data_dir, dates)
    rows, _ = read_since(files)
    res = analyse(user_table(rows, settings.features.min_stay_ms), ab.alpha, share_challenger)
    res.update({"experiment": ab.experiment, "primary_metric": ab.primary_metric, "dates": sorted({p.parent.name
                for p in files}), "files": len(files), "share_challenger": share_challenger})
    out = Path(out_dir) if out_dir else settings.layout.experiment(ab.experiment)
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: str(v) for k, v in output_files(out, "report").items()}
    res["paths"] = paths
    write_bytes_atomic(Path(paths["json"]), json.dumps(res, indent=2, default=float).encode())
    write_bytes_atomic(Path(paths["markdown"]), markdown(res).encode())
    plot(res, Path(paths["plot"]))
    return res


def _fmt(x: float, pct: bool = False) -> str:
    if x is None or not np.isfinite(x):
        return "n/a"
    return f"{x:+.2%}" if pct else f"{x:.4f}"


def markdown(res: Mapping[str, Any]) -> str:
    """The report as a markdown page."""
    v = res["variants"]
    lines = [f"# A/B report: {res['experiment']}", "",
             f"Users: champion {v['champion']['users']}, challenger {v['challenger']['users']}; impressions "
             f"{res['impressions']}. Primary metric: `{res['primary_metric']}`. Test: {res['test']} "
             f"(alpha {res['alpha']}).", "",
             "| metric | champion | challenger | lift | lift CI | p-value |", "| --- | --- | --- | --- | --- | --- |"]
    for m, c in res["comparison"].items():
        star = " **(primary)**" if m == res["primary_metric"] else ""
        lines.append(f"| {m}{star} | {_fmt(c['champion'])} | {_fmt(c['challenger'])} | "
                     f"{_fmt(c['relative_lift'], True)} | [{_fmt(c['lift_ci_low'], True)}, "
                     f"{_fmt(c['lift_ci_high'], True)}] | {_fmt(c['p_value'])} |")
    s = res["srm"]
    lines += ["", f"Sample ratio mismatch ({s['test']}): observed users {s['observed']}, expected shares "
              f"{[round(x, 4) for x in s['expected_share']]}, chi2 {s['chi2']:.3f}, p {s['p_value']:.4g}"
              + (" - **MISMATCH: do not trust the comparison**" if s["p_value"] < 0.001 else ""), ""]
    return "\n".join(lines)


def plot(res: Mapping[str, Any], path: Path) -> None:
    """Relative lift of every metric with its interval (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    comp = res["comparison"]
    names = list(comp)
    lift = np.array([comp[m]["relative_lift"] for m in names], float)
    lo = np.array([comp[m]["lift_ci_low"] for m in names], float)
    hi = np.array([comp[m]["lift_ci_high"] for m in names], float)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    y = np.arange(len(names))
    ok = np.isfinite(lift)
    ax.errorbar(np.nan_to_num(lift[ok]) * 100, y[ok], xerr=np.abs(np.vstack([lift - lo, hi - lift])[:, ok]) * 100,
                fmt="o", capsize=4)
    ax.axvline(0, color="grey", lw=1)
    ax.set_yticks(y, names)
    ax.set_xlabel("challenger vs champion, relative lift (%)")
    ax.set_title(f"{res['experiment']}: users {res['users']}, SRM p={res['srm']['p_value']:.3g}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
