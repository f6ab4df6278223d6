"""A stage killed while Great Expectations writes its store (an empty or half-written suite, validation
definition, checkpoint or ``great_expectations.yml``) does not break every later run: the broken file is
moved aside, kept, and saved again from the suites in code (found by the features chaos test in CI)."""

from __future__ import annotations

import logging
from pathlib import Path

import great_expectations.expectations as gxe
import pandas as pd
import pytest

from eliverec.data import validation
from eliverec.data.validation import gx_project_dir, repair_store, run_suite
from eliverec.layout import DataLayout

CHECKS = [gxe.ExpectColumnValuesToBeBetween(column="x", min_value=0)]
FRAME = pd.DataFrame({"x": [1, -2, 3]})
STORED = ["expectations/s/table.json", "validation_definitions/s.table.json", "checkpoints/s.table.json",
          "great_expectations.yml"]


def _validate(data_dir: Path) -> validation.SuiteResult:
    validation._context.cache_clear()  # a new process: the context is opened (and the store checked) again
    return run_suite("s", FRAME, CHECKS, table="table", data_dir=data_dir)


@pytest.mark.parametrize("cut", ["empty", "half"])
@pytest.mark.parametrize("stored", STORED)
def test_a_store_file_cut_by_a_kill_is_moved_aside_and_saved_again(tmp_path: Path, stored: str, cut: str,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    first = _validate(tmp_path)
    project = gx_project_dir(tmp_path)
    whole = (project / stored).read_bytes()
    broken = b"" if cut == "empty" else whole[: len(whole) // 3]
    (project / stored).write_bytes(broken)

    with caplog.at_level(logging.WARNING, logger="eliverec.data.validation"):
        again = _validate(tmp_path)

    assert (again.success, again.failed[0].examples) == (first.success, first.failed[0].examples) == (False, [-2])
    kept = list(DataLayout(tmp_path).gx_set_aside("x").parent.rglob(Path(stored).name))
    assert [p.read_bytes() for p in kept if p.relative_to(p.parents[len(Path(stored).parts) - 1]) == Path(stored)] \
        == [broken], "the broken file is kept, byte for byte"
    assert (project / stored).read_bytes() != broken, "saved again"
    assert "unreadable" in caplog.text and str(project) in caplog.text
    assert _validate(tmp_path).success is False  # and the store stays healthy


def test_a_healthy_store_is_left_alone(tmp_path: Path) -> None:
    _validate(tmp_path)
    project = gx_project_dir(tmp_path)
    before = {p: p.read_bytes() for p in project.rglob("*") if p.is_file() and "uncommitted" not in p.parts}
    assert repair_store(tmp_path) == []
    assert {p: p.read_bytes() for p in project.rglob("*") if p.is_file() and "uncommitted" not in p.parts} == before
    assert not DataLayout(tmp_path).gx_set_aside("x").parent.exists()


def test_a_broken_config_moves_the_stores_that_point_into_it(tmp_path: Path) -> None:
    _validate(tmp_path)
    project = gx_project_dir(tmp_path)
    (project / "great_expectations.yml").write_text("config_version: [")
    moved = repair_store(tmp_path)
    assert {p.relative_to(p.parents[0]).name for p in moved} == \
        {"great_expectations.yml", "expectations", "validation_definitions", "checkpoints"}
    assert not (project / "checkpoints").exists()


def test_no_repair_while_another_process_holds_the_store(tmp_path: Path) -> None:
    """A file being written by a live run (it holds ``.locks/gx-store.lock``) is not taken for a killed write."""
    import threading

    from eliverec.data.atomic import stage_lock

    _validate(tmp_path)
    suite = gx_project_dir(tmp_path) / STORED[0]
    suite.write_bytes(b"")  # what a writer's file looks like mid-write
    results: list[validation.SuiteResult] = []
    with stage_lock(tmp_path, "gx-store"):  # the "other process" (another lock file handle)
        opener = threading.Thread(target=lambda: results.append(_validate(tmp_path)))
        opener.start()
        opener.join(timeout=2.0)
        assert opener.is_alive() and suite.read_bytes() == b"", "waited for the lock, touched nothing"
    opener.join(timeout=60)
    assert results and results[0].success is False and suite.read_bytes() != b""
