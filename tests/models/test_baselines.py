"""The one mechanism of each baseline of issue 14 (CAN, MiNet, DASL, CoNet+, DTCDR+, DDTCDR+, ETA)."""

from __future__ import annotations

import math

import pytest
import torch

from eliverec.models import MultiTaskLoss, build_model
from eliverec.models.layers import CoActionUnit, MultiHeadTargetAttention, OrthogonalMap
from eliverec.models.layers.coaction import CAN_LAYERS
from tests.models.helpers import SEQ_LEN, batch, settings_for, small_vocab


def make(name: str, **model) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(settings_for(name, **model), small_vocab(), SEQ_LEN)


def parts(model: torch.nn.Module, b: dict) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    """The features ``encode`` gives the watch tower, and the user state (per row, no sharing)."""
    with torch.no_grad():
        state = model.user_state(model.embed_sequences(b))
        return model.encode(model.embed_context(b), state, False)[0], state


def test_coaction_unit_is_a_micro_mlp_whose_weights_are_the_target_parameters() -> None:
    unit = CoActionUnit()
    torch.manual_seed(0)
    induction, feed = torch.randn(3, unit.param_dim), torch.randn(3, 4, unit.feed_dim)
    mask = torch.tensor([[True] * 4, [False, True, True, True], [False] * 4])
    out = unit(induction, feed, mask)
    for b in range(3):  # one candidate at a time: an explicit MLP built from its own parameter vector
        layers, start = [], 0
        for i, o in CAN_LAYERS:
            layers.append(induction[b, start:start + i * o].reshape(i, o))
            start += i * o
        expected = torch.zeros(unit.out_dim)
        for p in feed[b][mask[b]]:
            for c in range(1, unit.orders + 1):
                h, hs = p**c, []
                for w in layers:
                    h = torch.tanh(h @ w)
                    hs.append(h)
                expected += torch.cat(hs)
        assert torch.allclose(out[b], expected, atol=1e-5), b


@pytest.mark.parametrize("name", ["can", "can_dual"])
def test_can_coaction_comes_from_the_target_channels_own_parameters(name: str) -> None:
    model = make(name).eval()
    b = batch(8)
    co = len(model.domains)
    before, _ = parts(model, b)
    with torch.no_grad():  # zero the induction rows of the first row's target channel: its co-action is gone
        for i, f in enumerate(("channel", "anchor", "category")):
            model.induction.tables[f].weight[b["channel"][0, i]] = 0.0
    after, _ = parts(model, b)
    assert all(float(t[0].abs().sum()) == 0.0 for t in after[-co:])
    assert any(float(t[0].abs().sum()) > 0.0 for t in before[-co:])
    other = (b["channel"][:, 0] != b["channel"][0, 0]) & (b["channel"][:, 1] != b["channel"][0, 1]) & (
        b["channel"][:, 2] != b["channel"][0, 2])
    assert other.any()
    for x, y in zip(before, after, strict=True):  # other targets and the non-co-action features are unchanged
        assert torch.allclose(x[other], y[other])
    for x, y in zip(before[:-co], after[:-co], strict=True):
        assert torch.equal(x, y)


def test_minet_interest_attention_is_unnormalised_and_item_attention_reads_each_domain() -> None:
    model = make("minet").eval()
    b = batch(8)
    before, _ = parts(model, b)
    with torch.no_grad():  # raise only the long-term interest's score by log 2: only its feature doubles
        model.interest_att[0].net[-1].bias += math.log(2.0)
    after, _ = parts(model, b)
    assert torch.allclose(after[2], 2 * before[2], atol=1e-5)
    assert torch.equal(after[3], before[3]) and torch.equal(after[4], before[4])
    b2 = {k: v.clone() for k, v in b.items()}
    b2["product_seq"][:, -1] = b2["product_seq"][:, -1].roll(1, dims=0)  # change the newest product
    moved, _ = parts(model, b2)
    assert not torch.allclose(moved[3], after[3]) and torch.allclose(moved[4], after[4])  # a_S moves, a_V not


def test_dasl_dual_embedding_and_cross_domain_query_use_one_orthogonal_mapping() -> None:
    model = make("dasl").eval()
    b = batch(8)
    with torch.no_grad():
        feats, state = parts(model, b)
        x = model.mapping.matrix()
        assert torch.allclose(state["live_dual"], state["live_user"] + state["product_user"] @ x, atol=1e-5)
        assert torch.allclose(state["product_dual"], state["product_user"] + state["live_user"] @ x.T, atol=1e-5)
        target = model.embed_context(b).target
        att = model.att["product"](target @ x.T, state["product_e"], state["product_mask"])[0]
    assert torch.allclose(feats[-1], att, atol=1e-5)


def test_conet_cross_connections_carry_the_other_domain() -> None:
    model = make("conet").eval()
    b = batch(8)
    b2 = {k: v.clone() for k, v in b.items()}
    b2["product_seq"] = b2["product_seq"].roll(1, dims=0)
    b2["product_len"] = b2["product_len"].roll(1, dims=0)
    with torch.no_grad():
        live = parts(model, b)[0][2], parts(model, b2)[0][2]
        assert not torch.allclose(*live)  # the live tower sees the product domain through H^l
        for h in model.cross:
            h.weight.zero_()
        live = parts(model, b)[0][2], parts(model, b2)[0][2]
    assert torch.equal(*live)  # without the cross units the towers are independent


def test_dtcdr_shares_one_user_embedding_learned_from_both_domains() -> None:
    model = make("dtcdr")
    b = batch(16)
    feats, state = parts(model, b)
    assert torch.allclose(state["shared_user"], (state["live_user"] + state["product_user"]) / 2)
    assert torch.equal(feats[2], state["shared_user"])
    model.run(b, share_user=False, with_reg=False)["watch"].sum().backward()
    for k in ("live", "product"):  # the live objective alone trains both domains' user networks
        assert all(float(p.grad.abs().sum()) > 0 for p in model.user_net[k].parameters())


def test_ddtcdr_mapping_stays_orthogonal_while_training() -> None:
    settings = settings_for("ddtcdr")
    torch.manual_seed(0)
    model, loss = build_model(settings, small_vocab(), SEQ_LEN), MultiTaskLoss(settings)
    opt = torch.optim.Adam([*model.parameters(), *loss.parameters()], lr=0.1)  # large steps on purpose
    start = model.mapping.matrix().detach().clone()
    for step in range(20):
        opt.zero_grad()
        total, _ = loss(model(batch(16, seed=step)), batch(16, seed=step), model)
        total.backward()
        opt.step()
    x = model.mapping.matrix().detach()
    assert float((x - start).abs().max()) > 0.1  # it learned a different mapping ...
    assert float(model.mapping.orthogonality_error()) < 1e-5  # ... that is still orthogonal
    _, state = parts(model, batch(8))
    assert torch.allclose(state["transferred"], state["product_user"] @ x, atol=1e-5)  # X^T u_S
    u = torch.randn(5, x.shape[0])
    assert torch.allclose(model.mapping.inverse(model.mapping(u)), u, atol=1e-5)


def test_orthogonal_map_error_is_float_rounding_for_any_parameter() -> None:
    m = OrthogonalMap(16)
    with torch.no_grad():
        m.a.mul_(30.0)  # far from the identity
    assert float(m.orthogonality_error()) < 1e-4


def test_eta_attends_over_the_recent_sequence_and_retrieves_only_past_the_configured_length() -> None:
    b = batch(8)
    short = make("eta", eta_retrieve_above=SEQ_LEN).eval()
    assert not short.retrieve and not hasattr(short, "hash")
    feats, state = parts(short, b)
    target = short.embed_context(b).target
    att: MultiHeadTargetAttention = short.att["live"]
    u, w = att(target, state["live_e"], state["live_mask"])
    assert torch.allclose(feats[-1], u) and torch.all((w > 0) == state["live_mask"].unsqueeze(1))  # every real event
    k = settings_for("eta").model.eta_topk
    long = make("eta", eta_retrieve_above=SEQ_LEN - 1).eval()
    assert long.retrieve
    _, state = parts(long, b)
    e, keep = long.behaviours("live", target, state["live_e"], state["live_mask"])
    assert e.shape[1] == k and torch.equal(keep.sum(1), state["live_mask"].sum(1).clamp(max=k))


@pytest.mark.parametrize("mtl", ["single", "vanilla", "adaptive"])
@pytest.mark.parametrize("name", ["can", "can_dual", "minet", "dasl", "conet", "dtcdr", "ddtcdr", "eta"])
def test_every_multi_task_mode_trains(name: str, mtl: str) -> None:
    settings = settings_for(name, mtl=mtl)
    model, loss = make(name, mtl=mtl), MultiTaskLoss(settings)
    opt = torch.optim.Adam([*model.parameters(), *loss.parameters()], lr=0.01)
    b = batch(16)
    totals = []
    for _ in range(3):
        opt.zero_grad()
        total, _ = loss(model(b), b, model)
        total.backward()
        opt.step()
        totals.append(float(total.detach()))
    assert all(math.isfinite(t) for t in totals) and (model.heads is None) == (mtl == "single")
