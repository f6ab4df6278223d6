"""One owner for the data root's layout and for the network blob (issue 17's acceptance grep, kept as a test).

Every path under the data root comes from :mod:`eliverec.layout`; every network blob is written by
:mod:`eliverec.artifact`. The scan reads the code (``eliverec/``, ``flows/``, ``benchmarks/``) with
:mod:`ast`, so docstrings and comments may name the tree freely. It flags, outside ``layout.py``:

- a path joined onto the data root by hand: ``<x>.data_dir / ...`` or ``Path(<x>.data_dir) / ...``;
- a path part spelled where a path is built (``/`` operand, ``Path(...)``, ``os.path.join(...)``,
  ``.joinpath``/``.glob``/``.rglob`` argument) that names one of the layout's folders;
- one of the layout's reserved file names (manifest, build record, spec, ...) in a string that is a path
  (no blank in it: a message may name a file, and one that shows a path takes it from the layout);
- a raw event log name (``events-...``) where a path is built;
- ``torch.save`` / ``pickle.dump`` outside ``artifact.py`` (the blob and checkpoint writer).

Tests are not scanned: they state the tree literally on purpose, as an independent check of it.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCANNED = ("eliverec", "flows", "benchmarks")

#: first path parts that are the layout's folders (under the data root, a day, or a stage's staging folder)
FOLDERS = frozenset({
    "raw", "bronze", "quarantine", "validation", "features", "checkpoints", "reports", "experiments", "serving",
    "registry", "mlflow", "monitoring", "gx", "prefect", ".locks", ".staging", ".settings", "tensors", "spill",
    "uncommitted", "data_docs",
})
#: file names only the layout spells
FILES = frozenset({
    "_manifest.json", "_build.json", "_summary.json", "feature_spec.json", "samples.parquet",
    "quarantine.parquet", "audit.jsonl", "allocation.json", "allocation_history.jsonl",
})  # not mlflow.db: a tracking URI that names its own store (a benchmark's) is a setting, not the layout
EVENT_LOG = "events-"
PATH_CALLS = frozenset({"Path", "PurePath", "join", "joinpath", "glob", "rglob"})
BLOB_WRITERS = frozenset({("torch", "save"), ("pickle", "dump"), ("pickle", "dumps")})

#: (file, what is flagged) -> why it stays
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("benchmarks/monitor_backtest.py", "data_dir / ..."):
        "the benchmark's own completion marker (_built) in the throwaway data root it generates",
    ("benchmarks/paper_tables.py", "data_dir / ..."):
        "the paper tables' own worlds (each a data root) kept under the default data root, and their _prepared.json "
        "marker; paper_tables.py is the models issue's (13) file, left as it is by issue 17",
    ("benchmarks/mechanism.py", "data_dir / ..."):
        "the mechanism benchmark's own worlds (each a data root) kept under the default data root",
    ("eliverec/training/trainer.py", "file name in 'features/feature_spec.json'"):
        "a path inside the MLflow run's artifacts, not under the data root (the same file name as the layout's)",
}


def _text(node: ast.AST) -> str | None:
    """The literal text of a string constant, or the leading literal part of an f-string."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        return str(node.values[0].value)
    return None


def _first_part(text: str) -> str:
    return text.lstrip("*/").split("/")[0]


def _is_data_root(node: ast.AST) -> bool:
    """``<x>.data_dir``, ``data_dir`` or ``Path(<x>.data_dir)``."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Path" and node.args:
        node = node.args[0]
    return (isinstance(node, ast.Attribute) and node.attr == "data_dir") or (
        isinstance(node, ast.Name) and node.id == "data_dir")


def _call_name(node: ast.AST) -> tuple[str, str]:
    """``(module, function)`` of a call like ``torch.save(...)``; empty strings for anything else."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
        return node.func.value.id, node.func.attr
    return "", ""


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring constants (module, classes, functions)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def _path_parts(node: ast.AST) -> list[ast.AST]:
    """The operands of a path being built at ``node``."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        return [node.left, node.right]
    if isinstance(node, ast.Call):
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name in PATH_CALLS:
            return list(node.args)
    return []


def violations(path: Path) -> list[tuple[int, str]]:
    """(line, what) of every hand-spelled data-root path or blob write in one source file."""
    tree = ast.parse(path.read_text(), str(path))
    docs, found = _docstrings(tree), []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and _is_data_root(node.left):
            found.append((node.lineno, "data_dir / ..."))
        for part in _path_parts(node):
            text = _text(part)
            if text is not None and _first_part(text) in FOLDERS:
                found.append((node.lineno, f"folder {_first_part(text)!r}"))
            if text is not None and _first_part(text).startswith(EVENT_LOG):
                found.append((node.lineno, "event log name"))
        text = _text(node)
        if text is not None and id(node) not in docs and not any(c.isspace() for c in text) \
                and any(name in text for name in FILES):
            found.append((node.lineno, f"file name in {text[:40]!r}"))
        if _call_name(node) in BLOB_WRITERS:
            found.append((node.lineno, ".".join(_call_name(node))))
    return found


@functools.cache
def _flagged() -> list[tuple[str, int, str]]:
    """(file, line, what) over the scanned tree, outside the two owners."""
    files = [p for top in SCANNED for p in sorted((REPO / top).rglob("*.py"))]
    owners = ("eliverec/layout.py", "eliverec/artifact.py")
    return [(p.relative_to(REPO).as_posix(), line, what) for p in files if p.relative_to(REPO).as_posix() not in owners
            for line, what in violations(p)]


def test_no_data_root_path_or_blob_is_spelled_outside_its_owner() -> None:
    found = [f"{f}:{line}: {what}" for f, line, what in _flagged() if (f, what) not in EXCEPTIONS]
    assert not found, "ask eliverec.layout.DataLayout (or eliverec.artifact) instead:\n" + "\n".join(found)


def test_every_exception_is_still_needed() -> None:
    flagged = {(f, what) for f, _, what in _flagged()}
    assert set(EXCEPTIONS) <= flagged, f"no longer needed: {sorted(set(EXCEPTIONS) - flagged)}"


def test_the_scan_finds_what_it_looks_for(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text('"""Docstrings may say raw/<date>/_manifest.json."""\nimport torch\nfrom pathlib import Path\n\n\n'
                   'def f(s, day):\n    a = s.data_dir / "anything"\n    b = Path(s.data_dir) / "x"\n'
                   '    c = root / "bronze" / day\n    d = folder.glob("*/_manifest.json")\n'
                   '    e = folder / f"events-{day}.jsonl"\n    torch.save({}, "x.pt")\n'
                   '    return s.layout.bronze(day), ("bronze",), {"reports": 1}\n')
    assert sorted(line for line, _ in violations(bad)) == [7, 8, 9, 10, 11, 12]
