"""Sparse embedding gradients, the split optimizer, gradient clipping and the training budgets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from eliverec.training import checkpoint as ckpt
from eliverec.training.optim import SplitOptimizer, clip_gradients, make_optimizer, make_sparse
from eliverec.training.trainer import describe_stop, stop_reason, train
from tests.training.toy import BUILDER, LOSS, toy_settings, toy_world

TOY = {"builder": BUILDER, "loss_builder": LOSS}


def _pair(seed: int = 0) -> tuple[nn.Embedding, nn.Linear]:
    torch.manual_seed(seed)
    return nn.Embedding(50, 4, padding_idx=0), nn.Linear(4, 1)


def _loss(emb: nn.Embedding, lin: nn.Linear) -> torch.Tensor:
    return lin(emb(torch.tensor([[1, 2, 2, 0], [3, 3, 1, 0]])).mean(1)).pow(2).sum()


def test_clip_gradients_matches_torch_on_dense_and_sparse_gradients() -> None:
    ref_e, ref_l = _pair()
    _loss(ref_e, ref_l).backward()
    ref_norm = float(nn.utils.clip_grad_norm_([*ref_e.parameters(), *ref_l.parameters()], 0.01))
    e, lin = _pair()
    make_sparse(e)
    _loss(e, lin).backward()
    assert e.weight.grad.is_sparse
    norm = clip_gradients([*e.parameters(), *lin.parameters()], 0.01)
    assert norm == pytest.approx(ref_norm, rel=1e-5)
    assert torch.allclose(e.weight.grad.to_dense(), ref_e.weight.grad, atol=1e-7)
    assert torch.allclose(lin.weight.grad, ref_l.weight.grad, atol=1e-7)


@pytest.mark.parametrize("optimizer", ["adam", "adagrad"])
def test_sparse_step_moves_only_the_rows_in_the_batch(tmp_path: Path, optimizer: str) -> None:
    s = toy_settings(tmp_path, f"train.optimizer={optimizer}")
    e, lin = _pair()
    tables = make_sparse(e)
    opt = make_optimizer(s, list(lin.parameters()), tables)
    before = e.weight.detach().clone()
    _loss(e, lin).backward()
    opt.step()
    moved = (e.weight.detach() != before).any(1)
    assert moved[[1, 2, 3]].all() and not moved[4:].any() and not moved[0]  # padding row 0 has no gradient


def test_optimizer_state_round_trips_and_refuses_a_mismatched_checkpoint(tmp_path: Path) -> None:
    s = toy_settings(tmp_path)
    e, lin = _pair()
    opt = make_optimizer(s, list(lin.parameters()), make_sparse(e))
    _loss(e, lin).backward()
    opt.step()
    state = opt.state_dict()
    fresh = make_optimizer(s, list(lin.parameters()), list(e.parameters()))
    fresh.load_state_dict(state)
    assert fresh.state_dict()["sparse"]["state"][0]["step"] == 1
    dense_only = SplitOptimizer(torch.optim.Adam(lin.parameters()), None)
    with pytest.raises(ValueError, match="sparse_embeddings"):
        dense_only.load_state_dict(state)
    with pytest.raises(ValueError, match="predates"):
        fresh.load_state_dict(torch.optim.Adam(lin.parameters()).state_dict())


@pytest.mark.parametrize("sparse", ["true", "false"])
def test_both_gradient_paths_train_and_resume_exactly(tmp_path: Path, sparse: str) -> None:
    s, dates = toy_world(tmp_path, "tracking.log_model=false", f"train.sparse_embeddings={sparse}")
    straight = train(s, end_date=dates[-1], run_name="straight", **TOY)

    def kill(step: int) -> None:
        if step == 12:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(s, end_date=dates[-1], run_name="resumed", after_step=kill, **TOY)
    resumed = train(s, end_date=dates[-1], run_name="resumed", resume=True, **TOY)
    a = ckpt.load(straight.checkpoint_dir / ckpt.LATEST)["model"]
    b = ckpt.load(resumed.checkpoint_dir / ckpt.LATEST)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert straight.metrics["val/auc"] > 0.5  # it learned something on either path


def test_the_wall_clock_budget_ends_a_run_and_is_reported(tmp_path: Path) -> None:
    s, dates = toy_world(tmp_path, "tracking.log_model=false", "train.max_minutes=0.00001", "train.epochs=5")
    res = train(s, end_date=dates[-1], **TOY)
    full = train(s.model_copy(update={"train": s.train.model_copy(update={"max_minutes": 0.0})}), end_date=dates[-1],
                 run_name="unlimited", **TOY)
    assert res.stop_reason == "time_budget" and stop_reason(res.metrics) == "time_budget"
    assert res.steps == 1 < full.steps  # a 0.6 ms budget ends the run after its first step
    assert res.metrics["best_step"] == 1.0  # the budget's last weights were validated and kept
    assert "wall-clock budget" in describe_stop(res.metrics)


def test_stop_reasons_for_epochs_and_early_stopping(tmp_path: Path) -> None:
    s, dates = toy_world(tmp_path, "tracking.log_model=false", "train.epochs=1", "train.patience=0")
    assert train(s, end_date=dates[-1], run_name="epochs", **TOY).stop_reason == "epochs"
    s, dates = toy_world(tmp_path / "b", "tracking.log_model=false", "train.eval_every=3", "train.patience=1",
                         "train.min_delta=1.0", "train.epochs=3")
    res = train(s, end_date=dates[-1], run_name="early", **TOY)
    assert res.stop_reason == "early_stopping" and stop_reason(res.metrics) == "early_stopping"


def test_feed_batches_keep_feeds_whole_cover_each_row_once_and_agree_across_ranks() -> None:
    from eliverec.training.trainer import FeedBatchSampler

    lens = np.random.default_rng(0).integers(1, 9, size=300)
    starts = np.append(0, np.cumsum(lens))
    one = FeedBatchSampler(starts, 64, 0, 1, seed=1, epoch=0)
    rows = np.concatenate(one.batches)
    assert len(rows) == len(set(rows.tolist())) and len(rows) >= starts[-1] - 64  # at most the last partial batch
    feed_of = np.repeat(np.arange(len(lens)), lens)
    runs = np.flatnonzero(np.diff(feed_of[rows])) + 1  # a feed is contiguous: one run per feed seen
    assert len(runs) + 1 == len(np.unique(feed_of[rows]))
    assert [b[:3] for b in FeedBatchSampler(starts, 64, 0, 1, seed=1, epoch=1).batches] != [b[:3] for b in one.batches]
    ranks = [FeedBatchSampler(starts, 64, r, 2, seed=1, epoch=0) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) > 0
    assert not set(np.concatenate(ranks[0].batches)) & set(np.concatenate(ranks[1].batches))


def test_weight_decay_reaches_only_the_touched_table_rows(tmp_path: Path) -> None:
    s = toy_settings(tmp_path, "train.weight_decay=0.5", "train.lr=0.1")
    e, lin = _pair()
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.zero_()  # no loss gradient reaches the table: only the decay moves its rows
    opt = make_optimizer(s, list(lin.parameters()), make_sparse(e))
    before = e.weight.detach().clone()
    _loss(e, lin).backward()
    opt.step()
    after = e.weight.detach()
    touched = [1, 2, 3]
    assert (after[touched].abs() < before[touched].abs()).all()  # pulled towards 0
    assert torch.equal(after[4:], before[4:])  # untouched rows are left alone
