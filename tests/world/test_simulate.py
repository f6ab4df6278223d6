"""The raw-log contract, determinism and streaming of ``simulate``."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from eliverec.data.schemas import DIMENSIONS, EVENT_TYPES, OPTIONAL, REQUIRED
from eliverec.world.world import DAY_MS, date_ms
from tests.world.conftest import tiny

_TYPES = {"event_id": str, "ts": int, "user_id": str, "product_id": str, "request_id": str, "channel_id": str,
          "position": int, "scene": str, "stay_ms": int, "viewers": int, "revenue_window": (int, float),
          "products_on_sale": list, "propensity": float}


def _lines(folder: Path) -> list[dict]:
    out = []
    for path in sorted(folder.glob("events-*.jsonl.gz")):
        with gzip.open(path, "rb") as f:
            out += [orjson.loads(line) for line in f]
    return out


def _digest(raw: Path) -> dict[str, str]:
    return {str(p.relative_to(raw)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(raw.rglob("*"))
            if p.is_file()}


def test_layout_and_counts(tiny_run):
    s, r = tiny_run
    raw = Path(r["raw_dir"])
    assert r["dates"][0] < s.world.start_date <= r["dates"][s.world.warmup_days]
    assert len(r["dates"]) == s.world.warmup_days + s.world.days
    for day in r["days"]:
        folder = raw / day["date"]
        names = sorted(p.name for p in folder.iterdir())
        assert names == ["channels.parquet"] + [f"events-{k}.jsonl.gz" for k in range(s.world.files_per_day)] + [
            "products.parquet", "users.parquet"]
        assert all(day["counts"][e] > 0 for e in EVENT_TYPES), day["counts"]
    assert r["events"] == sum(sum(d["counts"].values()) for d in r["days"])


def test_every_line_meets_the_contract(tiny_run):
    s, r = tiny_run
    raw = Path(r["raw_dir"])
    seen_ids: set[str] = set()
    for day in r["days"]:
        lo = date_ms(day["date"])
        lines = _lines(raw / day["date"])
        assert len(lines) == day["events"]
        for row in lines:
            kind = row["event"]
            allowed = {"event", *REQUIRED[kind], *OPTIONAL.get(kind, ())}
            assert set(REQUIRED[kind]) <= set(row) <= allowed, row
            for key in REQUIRED[kind]:
                assert isinstance(row[key], _TYPES[key]), (key, row)
            assert lo <= row["ts"] < lo + DAY_MS, row  # strictly inside its day
            for key in ("position", "stay_ms", "viewers"):
                assert row.get(key, 0) >= 0
            assert all(0 < len(row[k]) <= 128 for k in row if k.endswith("_id"))
        ids = [row["event_id"] for row in lines]
        assert len(set(ids)) == len(ids)
        assert not seen_ids & set(ids)
        seen_ids |= set(ids)
    imp = [row for row in lines if row["event"] == "impression"]
    assert all(0.0 < row["propensity"] <= 1.0 for row in imp)
    assert {row["position"] for row in imp} <= set(range(s.world.feed_size))


def test_visits_are_consistent(tiny_run):
    """Every enter has its impression and a leave; stays and in-channel clicks fall inside the visit."""
    _, r = tiny_run
    lines = _lines(Path(r["raw_dir"]) / r["dates"][-1])
    by = {k: [x for x in lines if x["event"] == k] for k in EVENT_TYPES}
    imp = {(x["request_id"], x["channel_id"]): x["ts"] for x in by["impression"]}
    enter = {(x["request_id"], x["channel_id"]): x["ts"] for x in by["enter"]}
    leave = {(x["request_id"], x["channel_id"]): (x["ts"], x["stay_ms"]) for x in by["leave"]}
    assert enter.keys() == leave.keys() and set(enter) <= set(imp)
    assert all(leave[k][0] - enter[k] == leave[k][1] and enter[k] > imp[k] for k in enter)
    for kind in ("goods_bag_click", "channel_product_click"):
        for x in by[kind]:
            key = (x["request_id"], x["channel_id"])
            assert enter[key] <= x["ts"] <= leave[key][0]
    live = {x["channel_id"] for x in by["channel_stats"]}
    assert {x["channel_id"] for x in by["impression"]} <= live


def test_dimension_tables(tiny_run):
    s, r = tiny_run
    folder = Path(r["raw_dir"]) / r["dates"][0]
    for name, schema in DIMENSIONS.items():
        t = pq.read_table(folder / f"{name}.parquet")
        assert t.schema.equals(schema), name
    assert pq.read_table(folder / "users.parquet").num_rows == s.world.n_users
    assert pq.read_table(folder / "channels.parquet").num_rows == s.world.n_channels
    first = pq.read_table(folder / "users.parquet")["register_days"].to_pylist()
    last = pq.read_table(Path(r["raw_dir"]) / r["dates"][-1] / "users.parquet")["register_days"].to_pylist()
    assert [b - a for a, b in zip(first, last, strict=True)] == [len(r["dates"]) - 1] * len(first)


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    from eliverec.world import simulate

    s = tiny(tmp_path / "a", "world.days=1", "world.warmup_days=1")
    a = simulate(s, users=80, progress=False)
    b = simulate(tiny(tmp_path / "b", "world.days=1", "world.warmup_days=1"), users=80, progress=False)
    again = simulate(s, users=80, progress=False)  # rerun into the same folder
    da, db = _digest(Path(a["raw_dir"])), _digest(Path(b["raw_dir"]))
    assert da == db == _digest(Path(again["raw_dir"]))
    c = simulate(tiny(tmp_path / "c", "world.days=1", "world.warmup_days=1"), users=80, seed=7, progress=False)
    dc = _digest(Path(c["raw_dir"]))
    assert dc.keys() == da.keys()
    assert all(dc[k] != da[k] for k in da if "events" in k)


def test_days_are_streamed_one_at_a_time(tmp_path, monkeypatch):
    """A day's files are complete before the next day starts, and users are simulated in chunks."""
    from eliverec.world import simulation as sim_mod
    from eliverec.world.simulation import simulate

    seen: list[tuple[str, int]] = []
    real_day, real_chunk = sim_mod.simulate_day, sim_mod.simulate_chunk

    def spy_day(world, index, raw_dir, *args, **kwargs):
        done = sorted(p.name for p in raw_dir.iterdir())
        assert done == world.dates[:index]  # earlier days fully written, none started after
        for d in done:
            assert not list((raw_dir / d).glob(".tmp-*"))
        return real_day(world, index, raw_dir, *args, **kwargs)

    def spy_chunk(world, index, lo, hi, *args, **kwargs):
        seen.append((world.dates[index], hi - lo))
        return real_chunk(world, index, lo, hi, *args, **kwargs)

    monkeypatch.setattr(sim_mod, "simulate_day", spy_day)
    monkeypatch.setattr(sim_mod, "simulate_chunk", spy_chunk)
    s = tiny(tmp_path, "world.days=2", "world.warmup_days=0", "world.chunk_users=50")
    simulate(s, users=120, progress=False)
    assert [n for _, n in seen] == [50, 50, 20] * 2


def test_bad_settings_are_clear_errors(tmp_path):
    from eliverec.config import ConfigError
    from eliverec.world import simulate

    with pytest.raises(ConfigError, match="n_categories"):
        simulate(tiny(tmp_path, "world.n_consistent=9"), progress=False)
    with pytest.raises(ConfigError, match="files_per_day"):
        tiny(tmp_path, "world.files_per_day=0")
