from __future__ import annotations

import pytest
from pydantic import ValidationError

from eliverec.config import ConfigError, load_settings
from tests.conftest import PARAMS


@pytest.mark.parametrize("profile", ["tiny", "default", "paper"])
def test_every_profile_loads(profile: str) -> None:
    s = load_settings(profile, params=PARAMS)
    assert s.profile == profile
    assert s.data_dir.is_absolute()


def test_paper_profile_has_paper_hyper_parameters() -> None:
    s = load_settings("paper", params=PARAMS)
    assert (s.model.dim, s.model.heads, s.train.batch_size, s.train.optimizer, s.train.lr) == (
        128, 8, 2048, "adagrad", 0.05)
    assert s.features.seq_len == 50


def test_override_changes_value_and_settings_are_frozen() -> None:
    s = load_settings("tiny", overrides=["world.n_users=500", "model.mlp=[8, 4]"], params=PARAMS)
    assert s.world.n_users == 500 and s.model.mlp == [8, 4]
    with pytest.raises(ValidationError):
        s.world.n_users = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("world.not_a_key=1", "world.not_a_key"),
        ("nosection.x=1", "nosection"),
        ("world.n_users=many", "world.n_users"),
        ("world.n_users=-5", "world.n_users"),
        ("train.optimizer=sgd", "train.optimizer"),
        ("no-equals-sign", "KEY=VALUE"),
    ],
)
def test_bad_overrides_name_the_key(override: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_settings("tiny", overrides=[override], params=PARAMS)


def test_unknown_profile_is_an_error() -> None:
    with pytest.raises(ConfigError, match="unknown profile 'huge'"):
        load_settings("huge", params=PARAMS)


def test_unknown_key_in_file_is_an_error(tmp_path) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text(PARAMS.read_text().replace("world:\n", "world:\n  typo_key: 3\n", 1))
    with pytest.raises(ConfigError, match=r"world\.typo_key: unknown key"):
        load_settings("default", params=bad)


def test_data_dir_resolves_against_params_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings("tiny", params=PARAMS)
    assert s.data_dir == PARAMS.parent / "data"
    assert s.tracking.uri == f"sqlite:///{PARAMS.parent / 'data' / 'mlflow' / 'mlflow.db'}"  # the data root's store
