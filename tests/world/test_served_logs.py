"""Served and imported logs survive ``simulate``, ``dvc repro`` and the nightly's default data source."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from eliverec.errors import DataError
from eliverec.world import simulation
from tests.conftest import PARAMS, REPO
from tests.world.conftest import tiny

SERVED = "events-serving-host-1-2.jsonl"
IMPORTED = "events-import.jsonl.gz"


def _plant(folder: Path, name: str) -> bytes:
    folder.mkdir(parents=True, exist_ok=True)
    body = f'{{"event": "enter", "from": "{name}"}}\n'.encode()
    (folder / name).write_bytes(body)
    return body


@pytest.mark.parametrize("name", [SERVED, IMPORTED])
def test_day_writer_refuses_a_day_with_foreign_logs_and_keeps_them(tmp_path: Path, name: str) -> None:
    day = tmp_path / "raw" / "2026-09-01"
    body = _plant(day, name)
    _plant(day, "events-0.jsonl.gz")  # a previous simulation's file: the simulator's own
    with pytest.raises(DataError, match=name):
        simulation.DayWriter(day, 2, True, 1)
    assert (day / name).read_bytes() == body
    assert simulation.foreign_logs(day) == [day / name]


def test_day_writer_replaces_only_its_own_files(tmp_path: Path) -> None:
    day = tmp_path / "raw" / "2026-09-01"
    _plant(day, "events-7.jsonl.gz")
    _plant(day, ".tmp-events-0.jsonl")
    writer = simulation.DayWriter(day, 1, False, 1)
    writer.write(0, b'{"event": "enter"}\n')
    paths = writer.close()
    assert sorted(p.name for p in day.iterdir()) == [p.name for p in paths]


def test_simulate_refuses_a_simulated_day_holding_served_logs(tmp_path: Path) -> None:
    from eliverec.world import simulate
    from eliverec.world.world import World

    s = tiny(tmp_path / "data", "world.days=1", "world.warmup_days=0", "world.n_users=50")
    date = World.from_settings(s).dates[0]
    body = _plant(s.data_dir / "raw" / date, SERVED)
    with pytest.raises(DataError, match="served or imported"):
        simulate(s, progress=False)
    assert (s.data_dir / "raw" / date / SERVED).read_bytes() == body


def test_the_scheduled_nightly_collects_by_default() -> None:
    from flows.serve import deployments

    nightly = next(d for d in deployments("default", [], None, str(PARAMS)) if d.name == "nightly")
    assert nightly.parameters["source"] == "collect"


def test_collect_with_no_raw_day_names_the_folder_and_the_setting(tmp_path: Path) -> None:
    from flows.common import Target
    from flows.nightly import collect_task

    with pytest.raises(DataError, match="flows.source=simulate"):
        collect_task.fn(Target.resolve("tiny", (), str(tmp_path / "data"), str(PARAMS)))


def test_dvc_treats_raw_logs_as_an_input_no_stage_owns() -> None:
    """``dvc repro`` never deletes or rewrites served logs: ``data/raw`` is no stage's output, ingest's input."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    outs = [o if isinstance(o, str) else next(iter(o)) for st in stages.values() for o in st.get("outs", [])]
    assert not [o for o in outs if o == "data/raw" or o.startswith("data/raw/")], outs
    assert any(str(d).startswith("data/raw") for d in stages["ingest"]["deps"])
