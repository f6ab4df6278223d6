"""How the feed position enters the watch logit (``model.position_bias``)."""

from __future__ import annotations

import pytest
import torch

from eliverec.models import build_model
from tests.models.helpers import SEQ_LEN, batch, settings_for, small_vocab


@pytest.mark.parametrize("mode", ["additive", "pal"])
def test_at_a_fixed_position_the_ranking_is_the_relevance_ranking(mode: str) -> None:
    torch.manual_seed(0)
    model = build_model(settings_for("din_dual", position_bias=mode), small_vocab(), SEQ_LEN).eval()
    with torch.no_grad():
        model.position_logit.weight.normal_()  # positions with different biases
        b = batch(16)
        ranks = []
        for p in (1, 5):
            out = model({**b, "position": torch.full_like(b["position"], p)})["watch"]
            ranks.append(out.argsort())
        assert torch.equal(ranks[0], ranks[1])
        # and the position does move the score
        lo, hi = (model({**b, "position": torch.full_like(b["position"], p)})["watch"] for p in (1, 5))
        assert not torch.allclose(lo, hi)


def test_pal_is_examination_times_relevance() -> None:
    from eliverec.models.base import position_bias

    r, b = torch.randn(50) * 4, torch.randn(50) * 4
    p = torch.sigmoid(position_bias("pal", r, b))
    assert torch.allclose(p, torch.sigmoid(r) * torch.sigmoid(b), atol=1e-5)
    assert torch.isfinite(position_bias("pal", torch.full((2,), 40.0), torch.full((2,), 40.0))).all()


def test_input_mode_reads_the_position_embedding() -> None:
    model = build_model(settings_for("din_dual", position_bias="input"), small_vocab(), SEQ_LEN).eval()
    assert "position" in model.bank.tables and not hasattr(model, "position_logit")
    b = batch(8)
    with torch.no_grad():
        a = model({**b, "position": torch.full_like(b["position"], 1)})["watch"]
        c = model({**b, "position": torch.full_like(b["position"], 6)})["watch"]
    assert not torch.allclose(a, c)
