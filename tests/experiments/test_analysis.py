"""A/B analysis: the delta-method test finds a real effect, stays quiet on none, and SRM catches bad splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from eliverec.experiments.analysis import ab_report, analyse, ratio_stats, read_since, serving_files, srm, user_table


def _rows(rng: np.random.Generator, n_users: int, p: dict[str, float], share: float = 0.5) -> list[dict]:
    """Served impressions (8 per feed) and enter/leave feedback with per-variant watch probability ``p``."""
    rows = []
    for u in range(n_users):
        variant = "challenger" if rng.random() < share else "champion"
        for f in range(int(rng.integers(1, 4))):
            rid = f"r{u}-{f}"
            for pos in range(8):
                rows.append({"event": "impression", "event_id": f"i{u}-{f}-{pos}", "ts": 1, "user_id": f"u{u}",
                             "request_id": rid, "channel_id": f"c{pos}", "position": pos, "scene": "homepage",
                             "variant": variant, "model_version": "1", "score": 0.5})
                if rng.random() < p[variant]:
                    base = {"user_id": f"u{u}", "request_id": rid, "channel_id": f"c{pos}"}
                    rows.append({"event": "enter", "event_id": f"e{u}-{f}-{pos}", "ts": 2, **base})
                    rows.append({"event": "leave", "event_id": f"l{u}-{f}-{pos}", "ts": 3, "stay_ms": 10_000, **base})
                    if rng.random() < 0.3:
                        rows.append({"event": "channel_product_click", "event_id": f"p{u}-{f}-{pos}", "ts": 4,
                                     "product_id": "p1", **base})
    return rows


def test_delta_method_matches_a_simulation_of_the_ratio() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(1, 20, 500).astype(float)
    x = rng.binomial(y.astype(int), 0.2).astype(float)
    _, var, _ = ratio_stats(x, y)
    boot = [x[i].sum() / y[i].sum() for i in (rng.integers(0, 500, 500) for _ in range(2000))]
    assert np.sqrt(var) == pytest.approx(np.std(boot), rel=0.1)


def test_real_effect_is_found_and_no_effect_is_not() -> None:
    rng = np.random.default_rng(1)
    worse = analyse(user_table(_rows(rng, 800, {"champion": 0.20, "challenger": 0.12}), 3000), 0.05, 0.5)
    c = worse["comparison"]["watch_rate"]
    assert c["p_value"] < 0.001 and c["relative_lift"] == pytest.approx(-0.4, abs=0.1) and c["ci_high"] < 0
    assert worse["variants"]["champion"]["metrics"]["ctr"]["value"] == pytest.approx(0.2, abs=0.02)
    assert worse["comparison"]["conversion"]["champion"] > 0
    p_values = [analyse(user_table(_rows(np.random.default_rng(s), 300, {"champion": 0.2, "challenger": 0.2}), 3000),
                        0.05, 0.5)["comparison"]["watch_rate"]["p_value"] for s in range(20)]
    assert sum(p < 0.05 for p in p_values) <= 3  # about alpha of A/A tests are false alarms


def test_sample_ratio_mismatch() -> None:
    assert srm({"champion": 5000, "challenger": 5040}, 0.5)["p_value"] > 0.1
    assert srm({"champion": 5000, "challenger": 4000}, 0.5)["p_value"] < 1e-6
    assert srm({"champion": 950, "challenger": 50}, 0.05)["p_value"] > 0.1


def test_report_files_and_cursor(tmp_path: Path, tiny_settings) -> None:
    rows = _rows(np.random.default_rng(2), 200, {"champion": 0.2, "challenger": 0.25})
    folder = tiny_settings.data_dir / "raw" / "2026-09-09"
    folder.mkdir(parents=True)
    path = folder / "events-serving-test.jsonl"
    half = len(rows) // 2
    path.write_text("".join(json.dumps(r) + "\n" for r in rows[:half]) + '{"event": "impre')  # a line in flight
    got, cursor = read_since(serving_files(tiny_settings.data_dir))
    assert len(got) == half
    with path.open("a") as fh:
        fh.write('ssion"}\n'.replace('ssion"}', 'ssion", "ts": 1}'))
        fh.write("".join(json.dumps(r) + "\n" for r in rows[half:]))
    more, _ = read_since(serving_files(tiny_settings.data_dir), cursor)
    assert len(more) == len(rows) - half + 1
    rep = ab_report(tiny_settings, share_challenger=0.5)
    assert rep["users"] == 200 and rep["test"].startswith("two-sided z-test")
    for key in ("json", "markdown", "plot"):
        assert Path(rep["paths"][key]).stat().st_size > 200
    assert "watch_rate **(primary)**" in Path(rep["paths"]["markdown"]).read_text()
