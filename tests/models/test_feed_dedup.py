"""The user state computed once per feed gives exactly the outputs and gradients of computing it per row."""

from __future__ import annotations

import pytest
import torch

from eliverec.models import build_model, list_models
from eliverec.models.base import USER_KEYS
from tests.models.helpers import SEQ_LEN, batch, settings_for, small_vocab


def feeds_batch(feeds: int = 5, size: int = 4) -> dict[str, torch.Tensor]:
    """``feeds`` requests of ``size`` candidates: user keys repeated within a feed, candidates differ."""
    b = batch(feeds * size)
    for k in USER_KEYS:
        b[k] = b[k][: feeds].repeat_interleave(size, dim=0)
    return b


@pytest.mark.parametrize("name", ["eliverec", "eta_dual", "dien_dual", "hgn", "bst_dual", "can_dual", "minet", "dasl",
                                  "conet", "dtcdr", "ddtcdr"])
def test_per_feed_state_matches_per_row_state(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(settings_for(name), small_vocab(), SEQ_LEN).eval()
    b = feeds_batch()
    # the same rows with the feeds interleaved: no two neighbours share a state, so nothing is deduplicated
    order = torch.arange(20).view(5, 4).t().flatten()
    inter = {k: v[order] for k, v in b.items()}
    out_feeds, out_rows = model(b), model(inter)
    for key in ("watch", "stay_time", "goods_bag", "product_click"):
        assert torch.allclose(out_feeds[key][order], out_rows[key], atol=1e-5), key
    model.train()
    grads = []
    for bb in (b, inter):
        model.zero_grad()
        model.run(bb, share_user=False, with_reg=False)["watch"].sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], atol=1e-4), n


def test_all_models_take_a_feed_batch() -> None:
    b = feeds_batch()
    for name in list_models():
        out = build_model(settings_for(name), small_vocab(), SEQ_LEN)(b)
        assert out["watch"].shape == (20,) and torch.isfinite(out["watch"]).all(), name
