"""A small Great Expectations runner (a file context per data root, Checkpoints, Data Docs) and its reports.

:func:`run_suite` validates one pandas DataFrame against a list of GX expectations through a stored
Checkpoint (suite saved once per configuration) and returns a plain :class:`SuiteResult`; the
Data Docs pages of its result are built right after it, or, inside :func:`docs_once`, once for every
run of the block (one index rebuild per stage instead of one per table: the index reads every stored
result, so a rebuild per table made a day's validation grow with the data root's history).
:func:`write_report` writes ``<folder>/<suite>.json`` (every result) and ``<folder>/<suite>.md``
(a summary naming each failed expectation with examples of failing values). Suites (lists of
expectations per table) live in :mod:`eliverec.data.suites`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eliverec.data.atomic import stage_lock, write_bytes_atomic
from eliverec.layout import DataLayout

log = logging.getLogger(__name__)


@dataclass
class CheckResult:
    """One expectation's outcome."""

    expectation: str  # GX type, e.g. "expect_column_values_to_not_be_null"
    column: str | None
    kwargs: dict[str, Any]
    success: bool
    observed: Any = None  # observed value for aggregate expectations
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    examples: list[Any] = field(default_factory=list)  # failing values (at most max_examples)

    def describe(self) -> str:
        """One line naming the expectation, its arguments and what failed."""
        args = ", ".join(f"{k}={_short(v)}" for k, v in self.kwargs.items() if k not in ("column", "batch_id"))
        where = f"{self.column}: " if self.column else ""
        what = f"{where}{self.expectation}({args})"
        if self.unexpected_count:
            return f"{what}: {self.unexpected_count} failing rows, e.g. {_short(self.examples)}"
        return f"{what}: observed {_short(self.observed)}"


@dataclass
class SuiteResult:
    """The outcome of one suite on one table."""

    suite: str
    table: str
    rows: int
    checks: list[CheckResult]

    @property
    def success(self) -> bool:
        return all(c.success for c in self.checks)

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.success]


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def gx_project_dir(data_dir: Path) -> Path:
    """``<data_dir>/gx``: the Great Expectations project (suites, checkpoints, results, Data Docs)."""
    return DataLayout(Path(data_dir)).gx_project()


def data_docs_index(data_dir: Path) -> Path:
    """The Data Docs home page of the data root (written by every validation)."""
    return DataLayout(Path(data_dir)).data_docs_index()


@functools.lru_cache(maxsize=8)
def _context(data_dir: str | None) -> Any:
    """A file-backed context under ``data_dir`` (``<data_dir>/gx``), or an ephemeral one for ``None``."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    with _store_lock(data_dir):
        if data_dir is None:
            ctx = gx.get_context(mode="ephemeral")
        else:
            repair_store(Path(data_dir))
            ctx = gx.get_context(mode="file", project_root_dir=str(gx_project_dir(Path(data_dir)).parent))
        ctx.variables.progress_bars = {"globally": False, "profilers": False, "metric_calculations": False}
    return ctx


def _store_lock(data_dir: str | Path | None) -> contextlib.AbstractContextManager[Any]:
    """The data root's GX-store lock (``.locks/gx-store.lock``), held while a process writes the store or
    repairs it, so that :func:`repair_store` never takes another live process's write for a killed one;
    nothing to hold for an ephemeral context (``None``)."""
    return contextlib.nullcontext() if data_dir is None else stage_lock(Path(data_dir), "gx-store")


#: The GX stores whose files :func:`repair_store` checks (one JSON object per suite, definition, checkpoint).
_STORES = ("expectations", "validation_definitions", "checkpoints")


#: Top-level keys of a whole ``great_expectations.yml``; GX writes ``data_context_id`` after the data
#: sources, so a file cut anywhere before it misses at least that key (YAML itself parses most cuts).
_CONFIG_KEYS = ("config_version", "stores", "expectations_store_name", "validation_results_store_name",
                "checkpoint_store_name", "data_docs_sites", "data_context_id")


def _readable(path: Path) -> bool:
    """Whether ``path`` holds a whole JSON object (``.json``) or a whole GX config (``.yml``)."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            return isinstance(json.loads(text), dict)
        config = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError):
        return False
    return isinstance(config, dict) and all(config.get(k) is not None for k in _CONFIG_KEYS)


def repair_store(data_dir: Path) -> list[Path]:
    """Move aside the GX store files that a killed write left unreadable; returns where they went.

    GX writes its suites, validation definitions, checkpoints and ``great_expectations.yml`` in place,
    so a stage killed during a write leaves an empty or half-written file, and every later run fails
    inside GX ("argument after ** must be a mapping, not NoneType"). Everything in those files is
    re-created from code by :func:`checkpoint` and :func:`_asset`, so a broken file is moved (not
    deleted) to :meth:`DataLayout.gx_set_aside` and saved again on this run. A broken
    ``great_expectations.yml`` (the data sources the definitions point at) moves the three stores with
    it. Stored validation results and Data Docs are kept: GX already skips an unreadable result.
    Called under :func:`_store_lock`, which every write of the store holds.
    """
    project = gx_project_dir(data_dir)
    if not project.is_dir():
        return []
    config = project / "great_expectations.yml"
    if config.exists() and not _readable(config):
        broken = [config, *(project / s for s in _STORES if (project / s).exists())]
    else:
        broken = [p for s in _STORES if (project / s).is_dir()
                  for p in sorted((project / s).rglob("*.json")) if not _readable(p)]
    if not broken:
        return []
    aside = DataLayout(Path(data_dir)).gx_set_aside(time.strftime("%Y%m%dT%H%M%S"))
    moved = []
    for p in broken:
        dest = aside / p.relative_to(project)
        dest.parent.mkdir(parents=True, exist_ok=True)
        p.replace(dest)
        moved.append(dest)
    log.warning("Great Expectations store %s: %d unreadable file(s) (an interrupted write) moved to %s; "
                "they are saved again from the suites in code", project, len(moved), aside)
    return moved


_FINGERPRINT = "eliverec_fingerprint"
#: Part of the fingerprint: a Checkpoint saved by an older form (with a Data Docs action) is saved again.
_CHECKPOINT_FORM = "docs-outside-the-checkpoint"
#: Identifiers of the results whose Data Docs pages :func:`docs_once` builds when its block ends.
_PENDING_DOCS: ContextVar[list[Any] | None] = ContextVar("eliverec_pending_docs", default=None)


def _fingerprint(expectations: Sequence[Any]) -> str:
    configs = [e.configuration.to_json_dict() for e in expectations]
    text = json.dumps([_CHECKPOINT_FORM, configs], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _stored_fingerprint(ctx: Any, name: str) -> str | None:
    try:
        ctx.checkpoints.get(name)
        return ctx.suites.get(name).meta.get(_FINGERPRINT)
    except Exception:  # noqa: BLE001  # GX raises several types for "not stored yet"
        return None


def _asset(ctx: Any, name: str) -> Any:
    """The batch definition ``whole`` of dataframe asset ``name`` in the ``frames`` data source."""
    try:
        source = ctx.data_sources.get("frames")
    except KeyError:
        source = ctx.data_sources.add_pandas("frames")
    try:
        asset = source.get_asset(name)
    except LookupError:
        asset = source.add_dataframe_asset(name)
    try:
        return asset.get_batch_definition("whole")
    except KeyError:
        return asset.add_batch_definition_whole_dataframe("whole")


def checkpoint(ctx: Any, name: str, expectations: Sequence[Any]) -> Any:
    """The stored Checkpoint ``name`` over suite ``name``; suite and checkpoint are saved only when new or changed.

    Date-dependent bounds are ``{"$PARAMETER": ...}`` values in the expectations, so a suite is
    saved once per configuration, not once per day. The Checkpoint has no actions: the caller
    builds the Data Docs (:func:`run_suite`, :func:`docs_once`).
    """
    import great_expectations as gx

    fp = _fingerprint(expectations)
    if _stored_fingerprint(ctx, name) == fp:
        return ctx.checkpoints.get(name)
    suite = ctx.suites.add_or_update(
        gx.ExpectationSuite(name=name, expectations=[e.copy() for e in expectations], meta={_FINGERPRINT: fp})
    )
    vd = gx.ValidationDefinition(name=name, data=_asset(ctx, name), suite=suite)
    vd = ctx.validation_definitions.add_or_update(vd)
    return ctx.checkpoints.add_or_update(
        gx.Checkpoint(name=name, validation_definitions=[vd], actions=[], result_format="SUMMARY")
    )


@contextlib.contextmanager
def docs_once(data_dir: Path | None) -> Iterator[None]:
    """Build the Data Docs once, when the block ends (also on an error), for every :func:`run_suite` inside it.

    The pages of each result are the same as when each run builds its own; the index is rebuilt
    once instead of once per table. ``None`` (no data root): nothing to build.
    """
    pending: list[Any] = []
    token = _PENDING_DOCS.set(pending)
    try:
        yield
    finally:
        _PENDING_DOCS.reset(token)
        if pending and data_dir is not None:
            _build_docs(_context(str(Path(data_dir).resolve())), pending)


def _build_docs(ctx: Any, identifiers: list[Any]) -> None:
    """The Data Docs pages of these results and suites, then the index (GX's incremental build)."""
    ctx.build_data_docs(resource_identifiers=identifiers, build_index=True)


def run_suite(
    suite: str,
    df: Any,
    expectations: Sequence[Any],
    *,
    table: str = "table",
    max_examples: int = 5,
    data_dir: Path | None = None,
    parameters: dict[str, Any] | None = None,
    run_name: str | None = None,
) -> SuiteResult:
    """Validate ``df`` against ``expectations`` through the Checkpoint ``<suite>.<table>``.

    Args:
        suite: the suite's name (reports are written as ``<suite>.json`` / ``<suite>.md``).
        df: a pandas DataFrame (the whole frame is one batch).
        expectations: ``great_expectations.expectations`` objects, e.g.
            ``gxe.ExpectColumnValuesToNotBeNull(column="user_id")``; values may be
            ``{"$PARAMETER": name}`` filled from ``parameters``.
        table: the name of the validated table, shown in reports.
        max_examples: failing values kept per expectation.
        data_dir: the data root: the file context ``<data_dir>/gx`` keeps the suite, its Checkpoint and
            the result, and rebuilds the Data Docs (:func:`data_docs_index`). ``None``: an ephemeral context.
        parameters: values of the expectations' ``$PARAMETER`` placeholders for this run.
        run_name: the run's name in the stored results and the Data Docs (the validated day).

    Returns:
        A :class:`SuiteResult`; nothing is raised on failed expectations (the caller decides).

    >>> import pandas as pd, great_expectations.expectations as gxe
    >>> check = gxe.ExpectColumnValuesToBeBetween(column="x", min_value={"$PARAMETER": "low"})
    >>> r = run_suite("demo", pd.DataFrame({"x": [1, -2, 3]}), [check], parameters={"low": 0})
    >>> r.success, r.failed[0].examples
    (False, [-2])
    """
    ctx = _context(None if data_dir is None else str(Path(data_dir).resolve()))
    with _store_lock(data_dir):
        cp = checkpoint(ctx, f"{suite}.{table}", expectations)
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

    run = cp.run(batch_parameters={"dataframe": df}, expectation_parameters=dict(parameters or {}),
                 run_id=RunIdentifier(run_name=run_name))
    result_id, res = next(iter(run.run_results.items()))
    if data_dir is not None:
        ids = [result_id, ExpectationSuiteIdentifier(name=res.suite_name)]
        pending = _PENDING_DOCS.get()
        if pending is None:
            _build_docs(ctx, ids)
        else:
            pending.extend(ids)
    checks = []
    for r in res.results:
        kw = {k: v for k, v in r.expectation_config.kwargs.items() if k != "batch_id"}
        out = r.result or {}
        examples = list(out.get("partial_unexpected_list") or [])[:max_examples]
        checks.append(
            CheckResult(
                expectation=r.expectation_config.type,
                column=kw.get("column"),
                kwargs=kw,
                success=bool(r.success),
                observed=out.get("observed_value"),
                unexpected_count=out.get("unexpected_count"),
                unexpected_percent=out.get("unexpected_percent"),
                examples=examples,
            )
        )
    return SuiteResult(suite=suite, table=table, rows=len(df), checks=checks)


def write_report(suite: str, results: Sequence[SuiteResult], folder: Path, date: str) -> tuple[Path, Path]:
    """Write ``<folder>/<suite>.json`` and ``<folder>/<suite>.md``; returns both paths."""
    ok = all(r.success for r in results)
    payload = {
        "suite": suite,
        "date": date,
        "success": ok,
        "tables": [
            {"table": r.table, "rows": r.rows, "success": r.success, "checks": [asdict(c) for c in r.checks]}
            for r in results
        ],
    }
    j, m = folder / f"{suite}.json", folder / f"{suite}.md"
    write_bytes_atomic(j, (json.dumps(payload, indent=2, default=str) + "\n").encode())
    write_bytes_atomic(m, _markdown(suite, date, results).encode())
    return j, m


def _markdown(suite: str, date: str, results: Sequence[SuiteResult]) -> str:
    ok = all(r.success for r in results)
    n = sum(len(r.checks) for r in results)
    n_failed = sum(len(r.failed) for r in results)
    lines = [
        f"# Validation `{suite}` for {date}: {'PASSED' if ok else 'FAILED'}",
        "",
        f"{n - n_failed} of {n} expectations passed on {len(results)} tables.",
        "",
        "| table | rows | expectations | failed |",
        "| --- | ---: | ---: | ---: |",
    ]
    lines += [f"| {r.table} | {r.rows} | {len(r.checks)} | {len(r.failed)} |" for r in results]
    if n_failed:
        lines += ["", "## Failed expectations", ""]
        lines += [f"- `{r.table}` {c.describe()}" for r in results for c in r.failed]
    return "\n".join(lines) + "\n"
