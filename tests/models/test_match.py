"""The user-candidate match counts (``models/layers/match.py``) and ``model.match_features``."""

from __future__ import annotations

import pytest
import torch

from eliverec.models import build_model
from eliverec.models.layers.match import COUNT_COLUMNS, MATCH_FEATURES, match_counts, match_inputs
from tests.models.helpers import SEQ_LEN, batch, settings_for, small_vocab


def test_counts_are_bounded_by_the_sequence_lengths_and_shares_by_one() -> None:
    b = batch(64, seed=3)
    x = match_counts(b)
    col = dict(zip(MATCH_FEATURES, x.T, strict=True))
    assert x.shape == (64, len(MATCH_FEATURES))
    assert torch.equal(col["live_len"], b["channel_len"].float())
    for name in ("live_category_n", "live_anchor_n", "live_channel_n"):
        assert bool((col[name] <= col["live_len"]).all()), name
    assert bool((col["product_category_n"] <= col["product_len"]).all())
    shares = x[:, [i for i in range(x.shape[1]) if i not in COUNT_COLUMNS]]
    assert bool(((shares >= 0) & (shares <= 1)).all())


def test_a_padded_slot_never_matches() -> None:
    b = batch(8, seed=1)
    b["channel_seq"][:] = 0  # all padding, and a target whose ids are 0 too
    b["channel"][:] = 0
    b["channel_len"][:] = 0
    col = dict(zip(MATCH_FEATURES, match_counts(b).T, strict=True))
    assert float(col["live_category_n"].sum()) == 0.0
    assert float(col["live_category_share"].sum()) == 0.0


def test_inputs_log_scale_the_counts_only() -> None:
    b = batch(32, seed=2)
    raw, scaled = match_counts(b), match_inputs(b)
    for i in range(raw.shape[1]):
        want = torch.log1p(raw[:, i]) if i in COUNT_COLUMNS else raw[:, i]
        assert torch.allclose(scaled[:, i], want), MATCH_FEATURES[i]


@pytest.mark.parametrize("name", ["eliverec", "din_dual", "wdl_dual"])
def test_a_model_with_match_features_reads_them(name: str) -> None:
    """Same weights except the new input columns: changing a match count changes the score only with the option on."""
    torch.manual_seed(0)
    model = build_model(settings_for(name, match_features=True), small_vocab(), SEQ_LEN)
    b = batch(16, seed=4)
    other = {k: v.clone() for k, v in b.items()}
    other["channel"][:, 2] = b["channel_seq"][:, -1, 2]  # the candidate's category = the latest watch's
    model.eval()
    with torch.no_grad():
        moved = (model(b)["watch"] - model(other)["watch"]).abs().max()
        model.dense.weight[:, -len(MATCH_FEATURES):] = 0.0  # cut the match inputs: only the category embedding moves
        base = (model(b)["watch"] - model(other)["watch"]).abs().max()
    assert float(moved) > 0.0
    assert model.dense.in_features == 4 + len(MATCH_FEATURES)
    assert float(base) != float(moved)
