"""Every registered model trains a few steps on real samples of the feature stage without NaN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from eliverec.features.batch import LABELS
from eliverec.models import MultiTaskLoss, build_model, list_models
from tests.pipeline import build, tiny

SMALL = ["features.vocab.user=2003", "features.vocab.product=5003", "features.vocab.brand=503",
         "features.vocab.channel=503", "features.vocab.anchor=503", "features.vocab.category=101"]


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory):
    from eliverec.features.dataset import load_days

    root = tmp_path_factory.mktemp("real-samples")
    s = tiny(root, *SMALL)
    info = build(s)
    ds = load_days(s.data_dir, info["train_days"])
    rows = np.random.default_rng(0).choice(len(ds), size=(3, 64), replace=False)
    batches = [{k: v for k, v in ds[np.sort(r)].items() if k != "ts"} for r in rows]
    return root, batches


def _trainable(root: Path, name: str) -> tuple[torch.nn.Module, MultiTaskLoss, torch.optim.Optimizer]:
    """Model ``name`` (tiny profile, seeded), its loss and an Adam over both, in training mode."""
    torch.manual_seed(0)
    s = tiny(root, *SMALL, f"model.name={name}")
    model, loss = build_model(s), MultiTaskLoss(s)
    model.train()
    return model, loss, torch.optim.Adam([*model.parameters(), *loss.parameters()], lr=1e-2)


@pytest.mark.parametrize("name", list_models())
def test_model_trains_on_real_samples(real, name: str) -> None:
    root, batches = real
    model, loss, opt = _trainable(Path(root), name)
    totals = []
    for batch in batches:
        out = model(batch)
        total, parts = loss(out, batch, model)
        assert torch.isfinite(total), (name, parts)
        opt.zero_grad()
        total.backward()
        opt.step()
        totals.append(float(total))
    assert all(np.isfinite(totals))
    model.eval()
    with torch.no_grad():
        scored = model.score({k: v for k, v in batches[0].items() if k not in LABELS})
    assert torch.isfinite(scored["watch"]).all() and ((scored["watch"] >= 0) & (scored["watch"] <= 1)).all()


@pytest.mark.parametrize("name", list_models())
def test_model_trains_when_a_whole_domain_is_empty(real, name: str) -> None:
    """A live-only log (the DRIVER import: no product events) gives batches whose product sequences are all
    padding; every loss and gradient stays finite (eLiveRec's eq. 8 distance correlation of a constant
    input was 0 * inf = NaN in the backward pass before)."""
    root, batches = real
    model, loss, opt = _trainable(Path(root), name)
    for batch in batches:
        live_only = {**batch, "product_seq": torch.zeros_like(torch.as_tensor(batch["product_seq"])),
                     "product_len": torch.zeros_like(torch.as_tensor(batch["product_len"]))}
        total, parts = loss(model(live_only), live_only, model)
        opt.zero_grad()
        total.backward()
        bad = [n for n, p in [*model.named_parameters(), *loss.named_parameters()]
               if p.grad is not None and not torch.isfinite(p.grad.to_dense()).all()]
        assert torch.isfinite(total) and not bad, (name, parts, bad)
        opt.step()
