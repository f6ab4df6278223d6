"""Options of the disentangled encoder and eq. 14 (benchmarks/mechanism.py measures them)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from eliverec.errors import EliverecError
from eliverec.features.batch import AUX_TASKS
from eliverec.models import MultiTaskLoss, build_model
from eliverec.models.layers import info_nce
from eliverec.models.losses import shared_parameters
from tests.models.helpers import SEQ_LEN, base_settings, batch, settings_for, small_vocab


class Toy(nn.Module):
    """A shared layer read by every head: the watch logit w, goods bag = w (agrees), product click = -w."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Linear(6, 6)
        self.direction, self.other = nn.Linear(6, 1, bias=False), nn.Linear(6, 1, bias=False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        shared = torch.tanh(self.backbone(x))
        w, st = self.direction(shared).squeeze(-1), self.other(shared).squeeze(-1)
        return {"watch": w, "goods_bag": w, "product_click": -w, "stay_time": st, "shared": shared,
                "reg": torch.zeros(())}


def toy_labels(n: int) -> dict[str, torch.Tensor]:
    return {"watch": torch.ones(n), "goods_bag": torch.ones(n), "product_click": torch.ones(n),
            "stay_time": torch.full((n,), 2.0)}


@pytest.mark.parametrize("grad_on", ["activation", "parameters"])
def test_eq14_cosines_have_the_same_signs_on_the_activation_and_the_parameters(grad_on: str) -> None:
    torch.manual_seed(0)
    model, labels = Toy(), toy_labels(16)
    loss = MultiTaskLoss(settings_for("eliverec", mtl="adaptive", mtl_grad_on=grad_on))
    out = model(0.1 * torch.randn(16, 6))
    total, logs = loss(out, labels, model)
    total.backward()
    assert logs["cos/goods_bag"] == pytest.approx(1.0, abs=1e-5)
    assert logs["cos/product_click"] == pytest.approx(-1.0, abs=1e-2)  # per-row scales differ slightly
    assert -1.0 <= logs["cos/stay_time"] <= 1.0
    assert model.backbone.weight.grad is not None  # the extra passes retain the graph for the real backward


def test_grad_cosines_shape_and_a_vanishing_gradient_gives_zero() -> None:
    model = Toy()
    out = model(torch.randn(8, 6))
    l_rec = F.binary_cross_entropy_with_logits(out["watch"], torch.ones(8))
    unrelated = (model.other.weight ** 2).sum()  # does not depend on the shared layer
    cos = MultiTaskLoss.grad_cosines(l_rec, [out["goods_bag"].mean(), unrelated], shared_parameters(model))
    assert cos.shape == (2,) and float(cos[1]) == 0.0 and not cos.requires_grad


def test_shared_parameters_of_eliverec_are_its_encoder_not_tables_or_heads() -> None:
    model = build_model(settings_for("eliverec"), small_vocab(), SEQ_LEN)
    shared = {id(p) for p in shared_parameters(model)}
    owners = {n.split(".")[0] for n, p in model.named_parameters() if id(p) in shared}
    assert owners == {"backbones", "query", "dense"}


def test_parameters_mode_trains_a_real_model_and_needs_the_model() -> None:
    s = settings_for("eliverec", mtl="adaptive", mtl_grad_on="parameters")
    model, b = build_model(s, small_vocab(), SEQ_LEN), batch(32)
    total, logs = MultiTaskLoss(s)(model(b), b, model)
    total.backward()
    assert torch.isfinite(total) and all(-1.0 <= logs[f"cos/{t}"] <= 1.0 for t in AUX_TASKS)
    with pytest.raises(EliverecError, match="needs the model"):
        MultiTaskLoss(s)(model(b), b)


def test_new_options_are_validated_and_default_to_the_paper() -> None:
    m = base_settings().model
    assert (m.prototypes, m.reg_on, m.nce_negatives, m.mtl_grad_on) == ("pooled", "retrieved", "batch", "activation")
    for key, bad in (("mtl_grad_on", "weights"), ("reg_on", "target"), ("nce_negatives", "all"),
                     ("prototypes", "random")):
        with pytest.raises(ValidationError, match=key):
            settings_for("eliverec", **{key: bad})


def intention(model: nn.Module, b: dict) -> torch.Tensor:
    return model.user_state(model.embed_sequences(b))["live_pc"]


def test_cross_prototypes_read_the_other_domain() -> None:
    b = batch(8)
    other = dict(b, product_seq=batch(8, seed=5)["product_seq"], product_len=batch(8, seed=5)["product_len"])
    for protos, moves in (("pooled", False), ("cross", True)):
        torch.manual_seed(0)
        model = build_model(settings_for("eliverec", prototypes=protos), small_vocab(), SEQ_LEN).eval()
        changed = not torch.allclose(intention(model, b), intention(model, other))
        assert changed == moves, protos


def test_cross_prototypes_weight_events_shared_with_the_other_domain() -> None:
    """An event whose item the product sequence also holds gets a larger eq. 5 weight than one it does not."""
    torch.manual_seed(0)
    model = build_model(settings_for("eliverec", prototypes="cross"), small_vocab(), SEQ_LEN).eval()
    model.backbones["live"] = _PassThrough()
    e = torch.randn(1, 2, 8)
    seqs = {"live_e": e, "live_mask": torch.ones(1, 2).bool(), "product_e": e[:, :1].repeat(1, 3, 1),
            "product_mask": torch.ones(1, 3).bool(), "user": torch.zeros(1, 8)}
    p = model.user_state(seqs)["live_pc"][0]
    assert float(p[0]) > float(p[1])


class _PassThrough(nn.Module):
    def forward(self, e: torch.Tensor, mask: torch.Tensor, user: torch.Tensor | None = None) -> torch.Tensor:
        return e


def test_pooled_regularisers_do_not_depend_on_the_target() -> None:
    b = batch(16)
    other = dict(b, channel=batch(16, seed=3)["channel"])
    for reg_on, same in (("retrieved", False), ("pooled", True)):
        torch.manual_seed(0)
        model = build_model(settings_for("eliverec", reg_on=reg_on), small_vocab(), SEQ_LEN).train()
        r1, r2 = model(b)["reg"], model(other)["reg"]
        assert torch.isclose(r1, r2).item() == same, reg_on


def test_specific_parts_as_hard_negatives() -> None:
    z = torch.eye(4)
    plain = info_nce(z, z, 0.5)
    assert float(plain) == pytest.approx(float(-torch.diagonal(torch.log_softmax(z @ z.T / 0.5, 1)).mean()))
    assert float(info_nce(z, z, 0.5, hard=z.unsqueeze(1))) > float(plain)  # a hard negative equal to the positive
    torch.manual_seed(0)
    s = settings_for("eliverec", nce_negatives="batch_specific")
    model, b = build_model(s, small_vocab(), SEQ_LEN), batch(16)
    out = model(b)
    out["reg"].backward()
    assert torch.isfinite(out["reg"]) and "reg/infonce" in out


def test_all_new_options_together_train_and_serve() -> None:
    s = settings_for("eliverec", prototypes="cross", reg_on="pooled", nce_negatives="batch_specific",
                     mtl_grad_on="parameters")
    torch.manual_seed(0)
    model, loss = build_model(s, small_vocab(), SEQ_LEN), MultiTaskLoss(s)
    opt = torch.optim.Adam([*model.parameters(), *loss.parameters()], lr=0.01)
    for step in range(3):
        b = batch(16, seed=step)
        opt.zero_grad()
        total, _ = loss(model(b), b, model)
        total.backward()
        opt.step()
        assert torch.isfinite(total)
    one = {k: v[:1].expand(6, *v.shape[1:]).clone() for k, v in batch(6).items()}  # one user, six candidates
    one["channel"] = batch(6, seed=9)["channel"]
    shared, rows = model.score(one, share_user=True), model.score(one, share_user=False)
    assert torch.allclose(shared["watch"], rows["watch"], atol=1e-5)
