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


def test_resolved_settings_cross_a_process_boundary_as_json_with_their_hash(tmp_path, monkeypatch) -> None:
    import argparse
    import json
    import shutil

    from eliverec.config import (
        add_settings_options,
        read_settings,
        settings_from_options,
        settings_hash,
        write_settings,
    )

    params = tmp_path / "params.yaml"
    shutil.copy(PARAMS, params)
    s = load_settings("tiny", overrides=["train.lr=0.3", f"serving.admin_token={'a' * 40}"], params=params,
                      data_dir=tmp_path / "data")
    path = write_settings(s, tmp_path / "handoff" / "settings.json")
    assert path.stat().st_mode & 0o077 == 0  # it holds the secrets
    params.unlink()  # read back without params.yaml
    monkeypatch.setenv("ELIVEREC_DATA_DIR", str(tmp_path / "elsewhere"))  # nor the environment
    back = read_settings(path)
    assert back == s and settings_hash(back) == settings_hash(s) and back.serving.admin_token == "a" * 40
    assert back.explicit == s.explicit and back.train.lr == 0.3

    parser = add_settings_options(argparse.ArgumentParser())
    assert settings_from_options(parser.parse_args(["--settings", str(path)])) == s
    with pytest.raises(ConfigError, match="drop --profile"):
        settings_from_options(parser.parse_args(["--settings", str(path), "--profile", "tiny"]))
    payload = json.loads(path.read_text())
    payload["settings"]["train"]["lr"] = 0.5
    path.write_text(json.dumps(payload))
    with pytest.raises(ConfigError, match="does not match its content"):
        read_settings(path)
