"""A small Great Expectations runner (ephemeral context, STACK.md) and its reports.

:func:`run_suite` validates one pandas DataFrame against a list of GX expectations and returns a
plain :class:`SuiteResult`; :func:`write_report` writes ``<folder>/<suite>.json`` (every result)
and ``<folder>/<suite>.md`` (a summary naming each failed expectation with examples of failing
values). Suites (lists of expectations per table) live in :mod:`eliverec.data.suites`.
"""

from __future__ import annotations

import functools
import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eliverec.data.atomic import write_bytes_atomic


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


@functools.lru_cache(maxsize=1)
def _context() -> Any:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = {"globally": False, "profilers": False, "metric_calculations": False}
    return ctx


def run_suite(
    suite: str, df: Any, expectations: Sequence[Any], *, table: str = "table", max_examples: int = 5
) -> SuiteResult:
    """Validate ``df`` against ``expectations`` in an ephemeral Great Expectations context.

    Args:
        suite: the suite's name (reports are written as ``<suite>.json`` / ``<suite>.md``).
        df: a pandas DataFrame (the whole frame is one batch).
        expectations: ``great_expectations.expectations`` objects, e.g.
            ``gxe.ExpectColumnValuesToNotBeNull(column="user_id")``.
        table: the name of the validated table, shown in reports.
        max_examples: failing values kept per expectation.

    Returns:
        A :class:`SuiteResult`; nothing is raised on failed expectations (the caller decides).

    >>> import pandas as pd, great_expectations.expectations as gxe
    >>> check = gxe.ExpectColumnValuesToBeBetween(column="x", min_value=0)
    >>> r = run_suite("demo", pd.DataFrame({"x": [1, -2, 3]}), [check])
    >>> r.success, r.failed[0].examples
    (False, [-2])
    """
    import great_expectations as gx

    ctx = _context()
    name = f"{suite}-{table}-{uuid.uuid4().hex[:8]}"
    batch_def = ctx.data_sources.add_pandas(name).add_dataframe_asset(table).add_batch_definition_whole_dataframe("all")
    gx_suite = ctx.suites.add(gx.ExpectationSuite(name=name, expectations=[e.copy() for e in expectations]))
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch_def, suite=gx_suite))
    try:
        res = vd.run(batch_parameters={"dataframe": df}, result_format="SUMMARY")
    finally:
        ctx.validation_definitions.delete(name)
        ctx.suites.delete(name)
        ctx.data_sources.delete(name)
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
