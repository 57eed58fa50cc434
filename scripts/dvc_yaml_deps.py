"""Rewrite the code entries of each stage's ``deps:`` list in dvc.yaml, as text.

Only the characters of the ``deps`` lists change: comments, blank lines, the other keys and the
data deps (with their original quoting and order) stay as they are. The positions come from
PyYAML's node marks. A flow list (``deps: [a, b]``) is written again as a flow list, wrapped under
its ``[``; a block list keeps its data lines (and their trailing comments) and gets one
``- path`` line per code dep after them. The result is parsed again and compared with what was
asked for, so a rewrite never leaves a changed or broken pipeline behind.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Callable

import yaml

#: Longest line a rewritten flow list makes (dvc.yaml's own lines go to ~125 characters).
LINE_WIDTH = 118
#: Code deps are written as plain scalars, so they must stay plain in flow and block context.
PLAIN_PATH = re.compile(r"[A-Za-z0-9_./-]+")


def _child(mapping: yaml.MappingNode, key: str) -> yaml.Node | None:
    return next((value for k, value in mapping.value if k.value == key), None)


def _line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def _line_end(text: str, index: int) -> int:
    end = text.find("\n", index)
    return len(text) if end < 0 else end


def dep_group(dep: str) -> str:
    """The folder a dep is listed under: a file's folder; a folder dep (no suffix) is its own."""
    path = PurePosixPath(dep)
    return str(path if not path.suffix else path.parent)


def render_flow(items: list[str], column: int, first_code: int) -> str:
    """``[a, b, ...]`` starting at ``column``, wrapped under the ``[``: the data deps first, then one
    line (or more) per :func:`dep_group` of code deps."""
    one_line = "[" + ", ".join(items) + "]"
    if column + len(one_line) <= LINE_WIDTH:
        return one_line
    groups = ["" if n < first_code else dep_group(item) for n, item in enumerate(items)]
    lines: list[str] = []
    line = ""
    for n, item in enumerate(items):
        piece = item + ("]" if n == len(items) - 1 else ",")
        fits = column + 1 + len(line) + 1 + len(piece) <= LINE_WIDTH
        if line and (not fits or groups[n] != groups[n - 1]):
            lines.append(line)
            line = ""
        line = f"{line} {piece}" if line else piece
    lines.append(line)
    return "[" + ("\n" + " " * (column + 1)).join(lines)


def _flow_edit(text: str, deps: yaml.SequenceNode, data: list[str], code: list[str]) -> tuple[int, int, str]:
    start, end = deps.start_mark.index, deps.end_mark.index
    if "#" in text[start:end]:
        raise ValueError(f"line {deps.start_mark.line + 1}: a comment inside a flow deps list would be lost")
    return start, end, render_flow(data + code, deps.start_mark.column, len(data))


def _block_edit(text: str, deps: yaml.SequenceNode, is_code: Callable[[str], bool], code: list[str]) -> tuple[int, int, str]:
    """Keep the data item lines (and comment lines between items); code lines after the last data."""
    items = deps.value
    start, end = _line_start(text, items[0].start_mark.index), _line_end(text, items[-1].end_mark.index)
    item_lines = {_line_start(text, i.start_mark.index): i for i in items}
    first = text[start:_line_end(text, start)]
    indent = first[:first.index("-")]
    kept: list[str] = []
    insert_at = 0
    offset = start
    for line in text[start:end].split("\n"):
        item = item_lines.get(offset)
        if item is not None and not line.lstrip().startswith("- "):
            raise ValueError(f"line {item.start_mark.line + 1}: expected one `- path` per line in a block deps list")
        if item is None or not is_code(item.value):
            kept.append(line)
            insert_at = len(kept) if item is not None else insert_at
        offset += len(line) + 1
    kept[insert_at:insert_at] = [f"{indent}- {dep}" for dep in code]
    return start, end, "\n".join(kept)


def rewrite_deps(text: str, wanted: dict[str, list[str]], is_code: Callable[[str], bool]) -> str:
    """``text`` with the code deps of each stage in ``wanted`` replaced by ``wanted[stage]``."""
    bad = [dep for deps in wanted.values() for dep in deps if not PLAIN_PATH.fullmatch(dep)]
    if bad:
        raise ValueError(f"not a plain path: {bad}")
    stages = _child(yaml.compose(text), "stages")
    edits: list[tuple[int, int, str]] = []
    for key, stage in stages.value:
        if key.value not in wanted:
            continue
        deps = _child(stage, "deps")
        if not isinstance(deps, yaml.SequenceNode) or not deps.value:
            raise ValueError(f"stage {key.value}: add a `deps:` list first (the rewrite only edits existing lists)")
        if any(not isinstance(item, yaml.ScalarNode) for item in deps.value):
            raise ValueError(f"stage {key.value}: deps must be plain paths")
        data = [text[i.start_mark.index:i.end_mark.index] for i in deps.value if not is_code(i.value)]
        code = wanted[key.value]
        if not data and not code:
            raise ValueError(f"stage {key.value}: no deps would be left; remove its `deps:` by hand")
        edits.append(_flow_edit(text, deps, data, code) if deps.flow_style
                     else _block_edit(text, deps, is_code, code))
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    _verify(text, wanted, is_code)
    return text


def _verify(text: str, wanted: dict[str, list[str]], is_code: Callable[[str], bool]) -> None:
    """The rewritten file parses and each stage's code deps are exactly the wanted ones."""
    stages = yaml.safe_load(text)["stages"]
    for name, deps in wanted.items():
        got = [d for d in stages[name]["deps"] if is_code(d)]
        if got != deps:
            raise AssertionError(f"rewrite of stage {name} gave code deps {got}, wanted {deps}")
