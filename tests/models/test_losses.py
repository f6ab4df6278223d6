"""MultiTaskLoss: eq. 15 in each mode, auxiliary scope, and the adaptive weighting objective (eq. 14)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from eliverec.errors import EliverecError
from eliverec.features.batch import AUX_TASKS
from eliverec.models import MultiTaskLoss, build_model
from tests.models.helpers import SEQ_LEN, batch, settings_for, small_vocab


def constructed(shared: torch.Tensor, direction: torch.Tensor, other: torch.Tensor) -> tuple[dict, dict]:
    """Outputs whose goods_bag gradient agrees with the watch task and product_click's conflicts."""
    w = shared @ direction
    outputs = {"watch": w, "goods_bag": w.clone(), "product_click": -w, "stay_time": shared @ other,
               "shared": shared, "reg": torch.zeros(())}
    B = shared.shape[0]
    labels = {"watch": torch.ones(B), "goods_bag": torch.ones(B), "product_click": torch.ones(B),
              "stay_time": torch.full((B,), 2.0)}
    return outputs, labels


def test_adaptive_weights_favour_the_agreeing_task_and_never_collapse() -> None:
    torch.manual_seed(0)
    loss = MultiTaskLoss(settings_for("eliverec", mtl="adaptive"))
    opt = torch.optim.Adam(loss.parameters(), lr=0.05)
    direction, other = torch.randn(6), torch.randn(6)
    for _ in range(60):
        shared = (0.01 * torch.randn(16, 6)).requires_grad_()  # logits near 0: per-row gradient scales match
        outputs, labels = constructed(shared, direction, other)
        opt.zero_grad()
        total, logs = loss(outputs, labels)
        total.backward()
        opt.step()
    assert logs["cos/goods_bag"] == pytest.approx(1.0, abs=1e-5)
    assert logs["cos/product_click"] == pytest.approx(-1.0, abs=1e-2)
    w = {t: logs[f"weight/{t}"] for t in AUX_TASKS}
    assert w["goods_bag"] > w["stay_time"] > w["product_click"] > 0.0
    assert sum(w.values()) == pytest.approx(0.7, abs=1e-5)


def test_adaptive_total_is_eq15_with_the_logged_weights() -> None:
    shared = torch.randn(8, 4, requires_grad=True)
    outputs, labels = constructed(shared, torch.randn(4), torch.randn(4))
    outputs["reg"] = torch.tensor(0.25)
    total, logs = MultiTaskLoss(settings_for("eliverec"))(outputs, labels)
    expected = logs["loss/rec"] + sum(logs[f"weight/{t}"] * logs[f"loss/{t}"] for t in AUX_TASKS) + 0.25
    assert float(total.detach()) == pytest.approx(expected, rel=1e-5)


def test_vanilla_uses_fixed_weights_and_single_ignores_aux() -> None:
    model = build_model(settings_for("eliverec_vanilla"), small_vocab(), SEQ_LEN)
    b = batch(32)
    out = model(b)
    total, logs = MultiTaskLoss(settings_for("eliverec_vanilla"))(out, b, model)
    m = b["watch"] > 0.5
    rec = F.binary_cross_entropy_with_logits(out["watch"], b["watch"])
    stay = ((out["stay_time"] - b["stay_time"])[m] ** 2).mean()
    gb = F.binary_cross_entropy_with_logits(out["goods_bag"][m], b["goods_bag"][m])
    pc = F.binary_cross_entropy_with_logits(out["product_click"][m], b["product_click"][m])
    assert float(total) == pytest.approx(float(rec + 0.3 * stay + 0.3 * gb + 0.1 * pc + out["reg"]), rel=1e-5)
    assert list(MultiTaskLoss(settings_for("eliverec_vanilla")).parameters()) == []
    single, logs1 = MultiTaskLoss(settings_for("eliverec_wo_m"))(out, b)
    assert float(single) == pytest.approx(float(rec + out["reg"]), rel=1e-5) and "loss/goods_bag" not in logs1


def test_watched_scope_ignores_aux_labels_of_unwatched_impressions() -> None:
    model = build_model(settings_for("eliverec_vanilla"), small_vocab(), SEQ_LEN)
    b = batch(32)
    out = {k: v.detach() for k, v in model(b).items()}
    b2 = dict(b, goods_bag=torch.where(b["watch"] > 0.5, b["goods_bag"], 1.0))
    watched = MultiTaskLoss(settings_for("eliverec_vanilla"))
    everything = MultiTaskLoss(settings_for("eliverec_vanilla", aux_scope="all"))
    assert float(watched(out, b)[0]) == pytest.approx(float(watched(out, b2)[0]))
    assert float(everything(out, b)[0]) != pytest.approx(float(everything(out, b2)[0]))


def test_no_watched_sample_gives_zero_aux_loss_not_nan() -> None:
    model = build_model(settings_for("eliverec"), small_vocab(), SEQ_LEN)
    b = batch(8)
    b["watch"] = torch.zeros(8)
    total, logs = MultiTaskLoss(settings_for("eliverec"))(model(b), b, model)
    total.backward()
    assert torch.isfinite(total) and logs["loss/goods_bag"] == 0.0


def test_mode_mismatch_is_a_clear_error_and_eval_uses_last_weights() -> None:
    model = build_model(settings_for("eliverec_wo_m"), small_vocab(), SEQ_LEN)
    with pytest.raises(EliverecError, match="no auxiliary heads"):
        MultiTaskLoss(settings_for("eliverec", mtl="adaptive"))(model(batch()), batch(), model)
    loss = MultiTaskLoss(settings_for("eliverec"))
    full = build_model(settings_for("eliverec"), small_vocab(), SEQ_LEN)
    with torch.no_grad():
        _, logs = loss(full(batch()), batch(), full)
    assert logs["weight/goods_bag"] == pytest.approx(0.3) and "cos/goods_bag" not in logs
