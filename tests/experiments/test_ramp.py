"""End to end on the tiny world: a worse challenger is rolled back, a better one ramps up and is promoted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from eliverec import registry
from eliverec.config import Settings, load_settings
from eliverec.experiments.controls import log_network, register_control
from eliverec.experiments.ramp import judge, ramp
from eliverec.experiments.traffic import TrafficSession
from eliverec.serving.buckets import allocation_path, load_allocation, with_share
from tests.serving.helpers import PARAMS, TinyWorld, running_service


def quick_fit(settings: Settings, dates: list[str], steps: int = 150) -> torch.nn.Module:
    """A few Adam steps of the tiny eLiveRec on the train days with the platform's model and loss.

    (``eliverec.training.train`` is tested in tests/training; on this shared 2-core machine its
    evaluation and MLflow logging cost minutes, while the ramp only needs a model that learned something.)
    """
    from eliverec.features.dataset import load_days
    from eliverec.models import MultiTaskLoss, build_model

    model, loss = build_model(settings), MultiTaskLoss(settings)
    ds = load_days(settings.data_dir, dates)
    opt = torch.optim.Adam([*model.parameters(), *loss.parameters()], lr=5e-3)
    rng = np.random.default_rng(0)
    model.train()
    for _ in range(steps):
        batch = {k: v for k, v in ds[np.sort(rng.choice(len(ds), 256, replace=False))].items() if k != "ts"}
        total, _ = loss(model(batch), batch, model)
        opt.zero_grad()
        total.backward()
        opt.step()
    return model.eval()


def _why(res: dict) -> str:
    """Each stage's decision, reason, traffic and service stats: what a failed assertion needs to show."""
    keep = ("percent", "decision", "reason", "rounds", "service")
    return json.dumps([{**{k: st.get(k) for k in keep}, "users": st["result"]["users"],
                        "primary": st["result"]["primary"]} for st in res["stages"]], default=str)[:4000]


@pytest.mark.slow
def test_ramp_rolls_back_a_worse_challenger_and_advances_a_better_one(world: TinyWorld, tmp_path: Path) -> None:
    # the traffic client and the service share this process's GIL (and, in CI, a heap grown by the tests
    # before): their latency is not the service's, so the latency guardrail is judged in test_judge_* only
    s = world.settings(tmp_path, "ab.max_p99_ms=60000")
    f = s.features
    train_days = world.dates[-(f.train_days + 1):-1]
    uri, run_id = log_network(s, quick_fit(s, train_days), run_name="quick-fit")
    good = registry.register(s, uri, {"model_name": "eliverec"}, run_id=run_id)
    registry.set_verdict(s, good, "pass")
    registry.bootstrap_champion(s, good, "trained tiny model")
    worse = register_control(s, good, "negative")  # the same network ranking in reverse
    registry.set_challenger(s, worse, "negative control")
    with running_service(s) as run:
        session = TrafficSession(s, run.url, seed=11)

        def drive() -> dict:
            return session.run(300, 6)

        first = ramp(s, url=run.url, driver=drive, max_rounds=6)
        assert first["outcome"] == "rolled_back", _why(first)
        # traffic runs 8 requests in flight, so how fast the loss becomes significant varies from run
        # to run: the ramp must stop at the stage where it does, never reach the last stage, and say why
        *held, breach = first["stages"]
        assert all(st["decision"] == "advance" for st in held) and len(first["stages"]) < len(s.ab.stages)
        assert breach["decision"] == "rollback" and "significant loss on watch_rate" in breach["reason"]
        assert breach["result"]["primary"]["relative_lift"] < 0
        default = with_share("x", "y", 1000, 0)
        assert load_allocation(allocation_path(s.data_dir), default).share() == 0.0
        assert registry.alias_version(s, registry.CHAMPION) == good

        registry.promote(s, worse, "roles swapped for the test")  # now the worse model is the champion
        registry.set_challenger(s, good, "the better model challenges")
        second = ramp(s, url=run.url, driver=drive, max_rounds=6)
        assert second["outcome"] == "promoted", _why(second)
        assert [st["decision"] for st in second["stages"]] == ["advance"] * 3
        assert [st["percent"] for st in second["stages"]] == [10.0, 25.0, 50.0]
        assert second["stages"][-1]["result"]["primary"]["relative_lift"] > 0
    assert registry.alias_version(s, registry.CHAMPION) == good
    last = registry.read_audit(s)[-1]
    assert last["actor"] == "ab-ramp" and last["action"] == "promote" and last["to_version"] == good
    assert Path(second["paths"]["markdown"]).read_text().count("| advance |") == 3


def _stage(z: float = 0.0, srm_p: float = 0.5, error_rate: float = 0.0, p99_ms: float | None = 10.0) -> tuple:
    result = {"comparison": {"watch_rate": {"z": z, "relative_lift": z / 10}}, "srm": {"p_value": srm_p}}
    return result, {"challenger": {"error_rate": error_rate, "p99_ms": p99_ms}}


@pytest.mark.parametrize(("stage", "reason"), [
    (_stage(), None),
    (_stage(z=-1.60, p99_ms=None), None),  # not significant at alpha 0.05 one-sided (z 1.645); no latency yet
    (_stage(z=float("nan")), None),  # no variance (e.g. nobody watched): no evidence of a loss
    (_stage(z=-1.70), "significant loss on watch_rate"),
    (_stage(srm_p=0.0009), "sample ratio mismatch"),
    (_stage(error_rate=0.02), "challenger error rate 2.00% > 1.00%"),
    (_stage(p99_ms=50.5), "challenger p99 latency 50.5 ms > 50.0 ms"),
])
def test_judge_names_each_breached_guardrail(stage: tuple, reason: str | None) -> None:
    s = load_settings("default", params=PARAMS)
    held, reasons = judge(s, *stage)
    assert held is (reason is None)
    assert (reasons == []) if reason is None else (len(reasons) == 1 and reason in reasons[0])


def test_judge_lists_every_breach_at_once() -> None:
    s = load_settings("default", params=PARAMS)
    held, reasons = judge(s, *_stage(z=-3.0, srm_p=1e-6, error_rate=0.5, p99_ms=400.0))
    assert not held and len(reasons) == 4


def test_a_ramp_that_dies_sets_the_challenger_share_back_to_zero(world: TinyWorld, tmp_path: Path) -> None:
    from tests.serving.helpers import register_untrained

    s = world.settings(tmp_path)
    registry.bootstrap_champion(s, register_untrained(s, seed=0), "champion")
    registry.set_challenger(s, register_untrained(s, seed=1), "challenger")
    seen: list[float] = []

    with running_service(s) as run:
        def dies() -> None:  # the first stage's share is live when the traffic source breaks
            seen.append(run.service.allocation.share("challenger"))
            raise ConnectionError("traffic source lost")

        with pytest.raises(ConnectionError):
            ramp(s, url=run.url, driver=dies)
        assert seen == [s.ab.stages[0] / 100.0]
        assert run.service.allocation.share("challenger") == 0.0
    stored = load_allocation(allocation_path(s.data_dir), with_share("x", "y", s.ab.buckets, 50.0))
    assert stored.share("challenger") == 0.0
