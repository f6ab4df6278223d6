"""Write tuned values into ``params.yaml`` without disturbing the rest of the file.

``eliverec tune --write`` replaces one model's entry of the ``tuned:`` table that the profile uses:
the top-level ``tuned:`` for the ``default`` profile, ``profiles.<name>.tuned`` for another one (created
there, starting from the table the profile uses now, when the profile has none yet). Only the lines of
that table change: every other line, comments included, stays byte for byte. The edit is a text edit
of a block-style mapping found by indentation (as params.yaml is written); the result is parsed back
and must equal the old document with only that table changed, else nothing is written.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from eliverec.config import ConfigError


def tuned_path(raw: Mapping[str, Any], profile: str) -> list[str]:
    """Keys leading to the ``tuned`` table that ``profile`` uses (see module docstring).

    >>> tuned_path({"profiles": {"bench": {}}}, "bench"), tuned_path({"profiles": {}}, "default")
    (['profiles', 'bench', 'tuned'], ['tuned'])
    """
    own = (raw.get("profiles") or {}).get(profile) or {}
    return ["profiles", profile, "tuned"] if profile != "default" or "tuned" in own else ["tuned"]


def write_tuned(path: Path, profile: str, model: str, values: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Set ``<tuned table of profile>.<model>`` to ``values`` in the file at ``path``; returns the key path."""
    text = path.read_text()
    raw = yaml.safe_load(text) or {}
    keys = tuned_path(raw, profile)
    table = dict((_get(raw, keys) if _has(raw, keys) else raw.get("tuned")) or {})
    table[model] = {section: dict(v) for section, v in values.items() if v}
    new_text = set_block(text, keys, table)
    expected = copy.deepcopy(raw)
    _get(expected, keys[:-1])[keys[-1]] = table
    if yaml.safe_load(new_text) != expected:
        raise ConfigError(f"{path}: could not edit {'.'.join(keys)} safely; set tuned.{model} by hand")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(new_text)
    tmp.replace(path)
    return keys


def set_block(text: str, keys: list[str], table: Mapping[str, Any]) -> str:
    """``text`` with the mapping at ``keys`` replaced by ``table`` (one flow-style line per model section)."""
    lines = text.splitlines(keepends=True)
    start, end, indent = 0, len(lines), 0
    for depth, key in enumerate(keys):
        found = _find_key(lines, key, start, end, indent)
        if found is None and depth == len(keys) - 1:
            return "".join(_insert(lines, end, indent, key, table))
        if found is None:
            raise ConfigError(f"'{'.'.join(keys[: depth + 1])}' not found as a block mapping in params.yaml")
        if depth == len(keys) - 1:
            return "".join(_replace(lines, found, indent, key, table))
        start, end = found + 1, _block_end(lines, found, indent)
        indent = _child_indent(lines, start, end, keys[: depth + 1])
    raise AssertionError("unreachable")


def render(key: str, table: Mapping[str, Any], indent: int, comment: str = "", column: int = 0) -> list[str]:
    """The block of ``key: table`` at ``indent``, ``comment`` kept at its old column.

    >>> render("tuned", {"din": {"train": {"lr": 0.01}}}, 0)
    ['tuned:\\n', '  din:\\n', '    train: {lr: 0.01}\\n']
    """
    pad = " " * indent
    head = f"{pad}{key}:" if table else f"{pad}{key}: {{}}"
    if comment:
        head = head.ljust(column) if len(head) < column else f"{head}  "
        head += comment
    body = []
    for name, entry in table.items():
        sections = [f"{pad}    {section}: {_flow(values)}\n" for section, values in (entry or {}).items()]
        body += [f"{pad}  {name}:{'' if sections else ' {}'}\n", *sections]
    return [f"{head}\n", *body]


def _flow(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000).strip()


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _is_content(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _find_key(lines: list[str], key: str, start: int, end: int, indent: int) -> int | None:
    pattern = re.compile(rf"^ {{{indent}}}{re.escape(key)}\s*:(\s|$)")
    return next((i for i in range(start, end) if pattern.match(lines[i])), None)


def _block_end(lines: list[str], at: int, indent: int) -> int:
    """Index after the last content line nested under the key at line ``at``."""
    end = at + 1
    for i in range(at + 1, len(lines)):
        if _is_content(lines[i]):
            if _indent(lines[i]) <= indent:
                break
            end = i + 1
    return end


def _child_indent(lines: list[str], start: int, end: int, keys: list[str]) -> int:
    first = next((lines[i] for i in range(start, end) if _is_content(lines[i])), None)
    if first is None:
        raise ConfigError(f"'{'.'.join(keys)}' is not a block mapping in params.yaml; edit it by hand")
    return _indent(first)


def _head_end(lines: list[str], at: int, indent: int) -> int:
    """Index after the comment-only lines that continue the key line's comment."""
    i = at + 1
    while i < len(lines) and lines[i].strip().startswith("#") and _indent(lines[i]) > indent:
        i += 1
    return i


def _comment(line: str) -> tuple[str, int]:
    """The trailing ``# comment`` of a key line (values here hold no ``#``) and its column."""
    at = line.find("#", line.find(":"))
    return ("", 0) if at < 0 else (line[at:].rstrip("\n"), at)


def _replace(lines: list[str], at: int, indent: int, key: str, table: Mapping[str, Any]) -> list[str]:
    head_end, end = _head_end(lines, at, indent), _block_end(lines, at, indent)
    block = render(key, table, indent, *_comment(lines[at]))
    return [*lines[:at], block[0], *lines[at + 1 : head_end], *block[1:], *lines[max(end, head_end) :]]


def _insert(lines: list[str], end: int, indent: int, key: str, table: Mapping[str, Any]) -> list[str]:
    """Add the block where the parent's block ends (at the top level: before ``profiles:``, else at the end)."""
    at, block = end, render(key, table, indent)
    if indent == 0:
        found = _find_key(lines, "profiles", 0, len(lines), 0)
        at = len(lines) if found is None else found
        block = [*block, "\n"] if found is not None else ["\n", *block]
    if at > 0 and not lines[at - 1].endswith("\n"):
        lines[at - 1] += "\n"
    return [*lines[:at], *block, *lines[at:]]


def _has(tree: Mapping[str, Any], keys: list[str]) -> bool:
    node: Any = tree
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            return False
        node = node[key]
    return True


def _get(tree: Any, keys: list[str]) -> Any:
    for key in keys:
        tree = tree[key]
    return tree
