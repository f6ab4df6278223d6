"""The package imports downward only, and no two modules import each other (directly or around a loop).

Every ``import`` and ``from ... import`` in ``eliverec/`` and ``flows/`` is read with ``ast``, at
module level and inside functions alike (heavy libraries are imported inside functions on purpose,
so a layer breach hides there as easily). Nothing is imported or executed. The floors come from
DESIGN section 2 (config at the ground floor, flows at the top) and the data's path through the
stages (raw logs -> features -> train -> evaluate + gate -> registry -> serving -> monitoring).
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("eliverec", "flows")

#: Floors, lowest first: a module may import its own floor and the floors below, never one above.
#: A module belongs to the floor of the longest prefix that names it.
LAYERS: tuple[tuple[str, ...], ...] = (
    # the exception types every floor raises
    ("eliverec.errors",),
    # the data root's folder and file names and day arithmetic; where the MLflow store is; no settings
    ("eliverec.layout", "eliverec.store"),
    # frozen settings from params.yaml; validates against nothing above it
    ("eliverec.config",),
    # raw-log contract, ingest + quarantine, external import, Great Expectations suites
    ("eliverec.data",),
    # the simulated world: writes raw logs in the data contract; the oracle
    ("eliverec.world",),
    # point-in-time samples, hashing, the batch contract, the one reader of feature days
    ("eliverec.features",),
    # networks on the layer library (they read the batch contract)
    ("eliverec.models",),
    # the saved network (one writer and loader), scoring a dataset and its metrics, the registry of saved networks
    ("eliverec.artifact", "eliverec.scoring", "eliverec.registry"),
    # training: reads feature days, scores with eliverec.scoring, writes checkpoints and the saved network
    ("eliverec.training",),
    # evaluation and the gate: judge what training made (checkpoints, its stop reason); training never imports them
    ("eliverec.evaluation",),
    # the ranking service: saved networks from the registry, online features, A/B buckets, event logs
    ("eliverec.serving",),
    # A/B analysis, ramps, traffic against the world through the service
    ("eliverec.experiments",),
    # drift, discoverability and segment monitoring of served days
    ("eliverec.monitoring",),
    # stage compositions the CLI, DVC and the flows call
    ("eliverec.pipeline", "eliverec.plots", "eliverec.ui"),
    # the one user-facing command line
    ("eliverec.cli", "eliverec.__main__", "eliverec"),
    # Prefect flows: orchestration only, on top of everything
    ("flows",),
)

#: Imports that break the floors, each with its reason; keep this list short and shrink it.
ALLOWED: dict[tuple[str, str], str] = {
    ("eliverec.cli", "flows.serve"):
        "`eliverec flows serve` starts the Prefect deployments defined in flows/ (imported inside that one "
        "command); the flows themselves import the package, so the edge has to cross the top floor once",
    ("eliverec.data.suites", "eliverec.features.expectations"):
        "the validation registry (data.suites.SUITES) runs the feature stage's samples suite by name "
        "(issue 16's Great Expectations work owns both files); to go, the registry moves up to its callers",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def resolve(target: str) -> str | None:
    """The longest known module that ``target`` (a dotted name) is or lies in; None outside the project."""
    known = modules()
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target or None


def imported(name: str, path: Path) -> set[tuple[str, int]]:
    """(module, line) of every project module ``name`` imports, wherever the import statement sits."""
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = ".".join(base[: len(base) - node.level + 1] + [node.module or ""]).strip(".") if node.level \
                else node.module or ""
            # ``from pkg import sub`` imports the submodule when there is one, else a name of ``pkg``
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules() else source for a in node.names]
        else:
            continue
        out |= {(m, node.lineno) for t in targets if (m := resolve(t)) and m != name}
    return out


@cache
def graph() -> dict[str, set[tuple[str, int]]]:
    return {name: imported(name, path) for name, path in modules().items()}


def floor(name: str) -> int:
    """The index in :data:`LAYERS` of the longest prefix naming ``name``."""
    best = max(((len(p), i) for i, layer in enumerate(LAYERS) for p in layer
                if name == p or name.startswith(p + ".")), default=None)
    if best is None:
        raise AssertionError(f"{name} is on no floor: add it to LAYERS in {Path(__file__).name}")
    return best[1]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_every_module_is_on_a_floor() -> None:
    assert [floor(name) for name in modules()]


def test_no_import_cycles() -> None:
    edges = {name: {target for target, _ in targets} for name, targets in graph().items()}
    assert cycles(edges) == []


def test_imports_point_down() -> None:
    upward = sorted(
        f"{modules()[name].relative_to(ROOT)}:{line} imports {target} "
        f"(floor {floor(name)} -> {floor(target)})"
        for name, targets in graph().items() for target, line in targets
        if floor(target) > floor(name) and (name, target) not in ALLOWED
    )
    assert upward == []


def test_allowed_exceptions_are_still_needed() -> None:
    """An allow-list entry whose import is gone must leave the list."""
    present = {(name, target) for name, targets in graph().items() for target, _ in targets}
    assert sorted(set(ALLOWED) - present) == []


@pytest.mark.parametrize(("source", "expected"), [
    ("import eliverec.features.batch\nfrom eliverec.features import hashing\n",
     {"eliverec.features.batch", "eliverec.features.hashing"}),
    ("def f():\n    from .batch import LABELS\n    from . import hashing\n",
     {"eliverec.features.batch", "eliverec.features.hashing"}),
    ("from eliverec.world import World\nimport numpy\n", {"eliverec.world"}),
])
def test_imports_are_read_at_every_depth(tmp_path: Path, source: str, expected: set[str]) -> None:
    path = tmp_path / "probe.py"
    path.write_text(source)
    assert {m for m, _ in imported("eliverec.features.probe", path)} == expected


def test_cycles_are_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
