"""A git revision of this repository checked out next to the working tree, for before/after rows in one
run (imported as a sibling module: ``python benchmarks/x.py``). Its code runs with the same venv:
``PYTHONPATH=<tree>`` and ``cwd=<tree>``."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def baseline_tree(ref: str, parent: Path) -> Path:
    """A detached worktree of ``ref`` under ``parent`` (remove it with :func:`drop_tree`)."""
    path = parent / f"baseline-{ref.replace('/', '_')}"
    out = subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), ref],
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"--baseline {ref}: cannot check it out ({out.stderr.strip()}); give a commit of this repo")
    return path


def drop_tree(path: Path) -> None:
    """Remove a worktree made by :func:`baseline_tree`."""
    subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)], capture_output=True)


def revision(ref: str = "HEAD") -> str:
    """The short commit hash of ``ref``."""
    return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", ref], capture_output=True,
                          text=True).stdout.strip()
