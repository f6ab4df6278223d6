"""The off-policy benchmark's truth and one logging run, small (``benchmarks/offpolicy.py``)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from eliverec.world import World
from tests.benchmarks.helpers import load_script


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    from tests.pipeline import tiny

    s = tiny(tmp_path_factory.mktemp("ope-bench"))
    world = World.from_settings(s)
    return load_script("offpolicy"), world, world.cfg.warmup_days + world.cfg.days - 1


def test_exact_truth_agrees_with_the_closed_loop(setup) -> None:
    bench, world, day = setup
    truth = bench.truths(world, day, 3000, np.random.default_rng(0))
    for name in bench.CANDIDATES:
        ab, se = truth[f"watch/ab/{name}"]
        assert abs(ab - truth[f"watch/{name}"]) < 5 * np.sqrt(2) * se  # both are means over 3000 feeds
    assert truth["watch/challenger"] > truth["watch/champion"] > truth["watch/random"] > truth["watch/negative"]


def test_one_logging_run_estimates_every_candidate_and_difference(setup) -> None:
    bench, world, day = setup
    cfg = argparse.Namespace(bootstrap=20, mc_samples=64, true_mu_samples=64, clip=100.0, level=0.9)
    run = bench.replicate(world, day, 300, cfg, np.random.default_rng(1))
    for est in ("ips", "snips", "dr", "ips*", "snips*", "dr*"):
        for name in ("champion", "challenger", "negative", "random", "negative-champion"):
            got = run[f"watch/{est}/{name}"]
            assert np.isfinite(got["value"]) and got["low"] <= got["high"]
    truth = bench.truths(world, day, 500, np.random.default_rng(2))
    summary = bench.summarise([run, run], truth, 0.9)
    assert summary["best_coverage"] in ("ips", "snips", "dr")
    assert all(0.0 <= r["coverage"] <= 1.0 for r in summary["rows"])
