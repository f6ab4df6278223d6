"""Model tests: registry, output contract, masking, gradient flow, determinism, serving, overfitting."""

from __future__ import annotations

from typing import get_args

import pytest
import torch

from eliverec.config import ConfigError, ModelName
from eliverec.errors import DataError
from eliverec.features.batch import AUX_TASKS
from eliverec.models import MODELS, MultiTaskLoss, build_model, effective_model_config, list_models
from tests.models.helpers import SEQ_LEN, batch, settings_for, small_vocab

NAMES = list_models()


def make(name: str, **model) -> torch.nn.Module:
    return build_model(settings_for(name, **model), small_vocab(), SEQ_LEN)


def test_registry_matches_config_literal_and_presets_apply() -> None:
    assert set(NAMES) == set(get_args(ModelName))
    assert {"can", "can_dual", "minet", "dasl", "conet", "dtcdr", "ddtcdr"} <= set(NAMES)  # issue 14
    assert MODELS["minet"].dual and MODELS["can_dual"].dual and not MODELS["can"].dual
    assert effective_model_config(settings_for("eliverec_wo_c").model).dcor is False
    assert effective_model_config(settings_for("eliverec_wo_m").model).mtl == "single"
    assert MODELS["din_dual"].dual and not MODELS["din"].dual
    with pytest.raises(ValueError, match="name"):
        settings_for("not_a_model")


def test_bad_vocab_and_bad_batch_are_user_errors() -> None:
    vocab = small_vocab()
    del vocab["brand"]
    with pytest.raises(ConfigError, match="brand"):
        build_model(settings_for("din"), vocab, SEQ_LEN)
    b = batch()
    del b["channel_seq"]
    with pytest.raises(DataError, match="channel_seq"):
        make("din")(b)


@pytest.mark.parametrize("name", NAMES)
def test_output_contract_and_all_padding_no_nan(name: str) -> None:
    model = make(name)
    b = batch(8)
    b["channel_len"][:3] = 0
    b["channel_seq"][:3] = 0
    b["product_len"][2:5] = 0
    b["product_seq"][2:5] = 0
    out = model(b)
    for key in ("watch", *AUX_TASKS):
        assert out[key].shape == (8,) and torch.isfinite(out[key]).all(), key
    assert out["reg"].shape == () and out["shared"].shape[0] == 8
    total, logs = MultiTaskLoss(settings_for(name))(out, b, model)
    total.backward()
    assert torch.isfinite(total) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert logs["loss/total"] == pytest.approx(float(total.detach()))


@pytest.mark.parametrize("name", NAMES)
def test_a_one_row_batch_trains_and_scores(name: str) -> None:
    """A batch of one row (a data set's last batch, a one-candidate request) goes through every path."""
    model = make(name)
    b = batch(1)
    out = model(b)
    total, _ = MultiTaskLoss(settings_for(name))(out, b, model)
    total.backward()
    model.eval()
    with torch.no_grad():
        shared, per_row = model.score(b, share_user=True), model.score(b, share_user=False)
    assert torch.isfinite(total) and out["watch"].shape == (1,)
    assert torch.allclose(shared["watch"], per_row["watch"], atol=1e-6)


@pytest.mark.parametrize("name", ["eliverec", "eliverec_wo_p", "eliverec_din", "eliverec_hgn", "eliverec_cross",
                                  "din_dual", "dien_dual", "bst_dual", "eta_dual", "wdl_dual", "hgn_dual", "can_dual",
                                  "minet", "dasl", "conet", "dtcdr", "ddtcdr"])
def test_gradient_reaches_every_parameter(name: str) -> None:
    model = make(name)
    loss = MultiTaskLoss(settings_for(name))
    total, _ = loss(model(batch(32)), batch(32), model)
    total.backward()
    dead = [n for n, p in [*model.named_parameters(), *loss.named_parameters()]
            if p.grad is None or float(p.grad.abs().sum()) == 0.0]
    assert dead == []


def test_padding_content_does_not_change_outputs() -> None:
    model = make("eliverec").eval()
    b = batch(8)
    b2 = {k: v.clone() for k, v in b.items()}
    pad = torch.arange(SEQ_LEN).unsqueeze(0) < (SEQ_LEN - b["channel_len"]).unsqueeze(1)
    b2["channel_seq"][pad] = 3  # garbage ids where the contract has padding
    with torch.no_grad():
        assert torch.allclose(model(b)["watch"], model(b2)["watch"], atol=1e-6)


def test_determinism_for_a_seed() -> None:
    a, b = make("eliverec"), make("eliverec")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert torch.equal(a(batch())["watch"], b(batch())["watch"])
    other = build_model(settings_for("eliverec").model_copy(update={"seed": 7}), small_vocab(), SEQ_LEN)
    assert not torch.equal(a.tower.net[0].weight, other.tower.net[0].weight)


@pytest.mark.parametrize("name", ["eliverec", "eliverec_wo_d", "dien_dual", "bst_dual", "eta", "eliverec_wo_m",
                                  "can_dual", "minet", "dasl", "conet", "dtcdr", "ddtcdr"])
def test_score_shares_user_state_and_uses_fixed_position(name: str) -> None:
    model = make(name)
    b = batch(6)
    for k in ("user", "product_seq", "product_len", "channel_seq", "channel_len"):
        b[k] = b[k][:1].expand_as(b[k]).clone()
    assert model.single_user(b)
    shared, full = model.score(b), model.score(b, share_user=False)
    for k in ("watch", *AUX_TASKS):
        assert torch.allclose(shared[k], full[k], atol=1e-5), k
    assert torch.all((shared["watch"] > 0) & (shared["watch"] < 1)) and model.training
    moved = dict(b, position=torch.randint(1, 30, (6,)))
    assert torch.allclose(model.score(moved)["watch"], shared["watch"])
    if name == "eliverec_wo_m":
        assert float(shared["goods_bag"].abs().sum()) == 0.0


def test_single_user_detection() -> None:
    assert not make("din").single_user(batch(4))


@pytest.mark.parametrize("name", NAMES)
def test_every_model_overfits_a_tiny_batch(name: str) -> None:
    torch.manual_seed(0)
    settings = settings_for(name)
    model, loss = build_model(settings, small_vocab(), SEQ_LEN), MultiTaskLoss(settings)
    opt = torch.optim.Adam([*model.parameters(), *loss.parameters()], lr=0.01)
    b = batch(32, seed=3)
    first = last = None
    for _ in range(40):
        opt.zero_grad()
        total, logs = loss(model(b), b, model)
        total.backward()
        opt.step()
        first = first if first is not None else logs["loss/rec"]
        last = logs["loss/rec"]
        assert all(v == v for v in logs.values()), logs  # no NaN anywhere in the logged parts
    assert last < 0.3 * first, (first, last)


@pytest.mark.parametrize("override", [{"consistency": "euc", "specific_reg": True}, {"prototypes": "learned",
                         "backbone": "hgn", "mtl": "vanilla"}, {"disentangle": False, "mtl": "single"},
                         {"aux_scope": "all", "layers": 2, "dropout": 0.1}])
def test_config_driven_ablations_train_without_nan(override: dict) -> None:
    settings = settings_for("eliverec", **override)
    model, loss = build_model(settings, small_vocab(), SEQ_LEN), MultiTaskLoss(settings)
    opt = torch.optim.Adagrad([*model.parameters(), *loss.parameters()], lr=0.05)
    for step in range(3):
        opt.zero_grad()
        total, _ = loss(model(batch(16, seed=step)), batch(16, seed=step), model)
        total.backward()
        opt.step()
        assert torch.isfinite(total)
