"""Loading trusts data, never code: weights-only checkpoints, an allow-list of builders, no secrets saved."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from eliverec import artifact as pyfunc
from eliverec.config import REDACTED, SECRET_KEYS
from eliverec.training import checkpoint as ckpt

ADMIN, PRODUCER = "admin-secret-value-1", "producer-secret-value-2"


class Payload:
    """Unpickling this runs code (what a hostile checkpoint would carry)."""

    def __reduce__(self):  # noqa: ANN204
        return (Path.touch, (Path(self.target),))

    def __init__(self, target: Path) -> None:
        self.target = str(target)


def test_a_checkpoint_that_carries_code_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "x": Payload(marker)}, path)
    with pytest.raises(ckpt.CheckpointError, match="not a plain-data checkpoint"):
        ckpt.load(path)
    assert not marker.exists()


def test_checkpoints_with_rng_and_numpy_values_round_trip_weights_only(tmp_path: Path) -> None:
    np.random.seed(3)
    state = ckpt.rng_state()
    expected = np.random.rand(4)
    blob = {"rng": state, "loop": {"best": np.float32(0.25), "history": [{"auc": np.float64(0.5)}]},
            "weights": torch.arange(3)}
    loaded = ckpt.load(ckpt.save_atomic(blob, tmp_path / "latest.pt"))
    assert loaded["loop"] == {"best": 0.25, "history": [{"auc": 0.5}]}
    ckpt.set_rng_state(loaded["rng"])
    assert np.array_equal(np.random.rand(4), expected)
    assert torch.equal(loaded["weights"], blob["weights"])


def test_a_blob_naming_a_builder_off_the_allow_list_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(pyfunc.TRUSTED_ENV, raising=False)
    blob = {"settings": {}, "feature_spec": {}, "builder": "os:system", "state_dict": {}}
    with pytest.raises(pyfunc.UntrustedModel, match="os:system"):
        pyfunc.rebuild(blob)
    assert pyfunc.trusted_builder("eliverec.models:build_model") is not None


def test_secrets_never_reach_saved_settings_mlflow_params_or_blobs(tmp_path: Path) -> None:
    from eliverec.config import load_settings
    from eliverec.training.tracking import flatten
    from tests.conftest import PARAMS

    s = load_settings("tiny", overrides=[f"serving.admin_token={ADMIN}", f"serving.producer_token={PRODUCER}"],
                      params=PARAMS, data_dir=tmp_path / "data")
    tree = s.section_dict()
    assert all(flatten(tree)[key] == REDACTED for key in SECRET_KEYS)
    saved = ckpt.save_atomic({"settings": tree}, tmp_path / "network.pt").read_bytes()
    assert ADMIN.encode() not in saved and PRODUCER.encode() not in saved
    assert s.section_dict(secrets=True)["serving"]["admin_token"] == ADMIN  # for rebuilding settings only


def test_a_save_cut_by_a_kill_leaves_no_temporary_file_after_the_next_save(tmp_path: Path) -> None:
    stale = tmp_path / ".latest.pt.k1ll3d.tmp"
    stale.write_bytes(b"half a checkpoint")
    ckpt.save_atomic({"step": 1}, tmp_path / "latest.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pt"]
