"""Import layers, read statically (``ast``): the bottom never names the top.

``chordflow/`` (the command) sits on ``model/``, which sits on ``stages/``, which sits on
``pipeline/``, which sits on ``music/`` (the shared vocabulary, which imports nothing of the project). A module may import its own layer and the ones below, never one above: not at the top
of a file, not inside a function, not through a module name in a string (``importlib`` arguments,
``"module:Class"`` registry targets, lazily imported module lists). Sampling must not pull in
training: nothing a module of ``model/sampling/`` reaches, transitively, is in ``model/training/``.
"""

from __future__ import annotations

import ast
import re
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES: tuple[str, ...] = ("music", "pipeline", "stages", "model", "chordflow")
#: package -> the packages above it, which it must not import.
FORBIDDEN: dict[str, frozenset[str]] = {
    "music": frozenset({"pipeline", "stages", "model", "chordflow"}),
    "pipeline": frozenset({"stages", "model", "chordflow"}),
    "stages": frozenset({"model", "chordflow"}),
    "model": frozenset({"chordflow"}),
}
#: The sampling package, and the package nothing it reaches may be in.
SAMPLING = "model.sampling"
TRAINING = "model.training"
#: A string that is a dotted module path, optionally with ``:attribute`` (a registry target).
MODULE_STRING = re.compile(r"[A-Za-z_]\w*(\.\w+)*(:[\w.]+)?")


def _modules() -> dict[str, Path]:
    """Dotted name -> file, for every source file of the project packages."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if "__pycache__" not in parts:
                found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _absolute(module: str, name: str | None, level: int) -> str:
    """The absolute module of ``from <level dots><name> import ...`` written in ``module``."""
    if not level:
        return name or ""
    package = module.split(".") if _is_package(module) else module.split(".")[:-1]
    base = package[: len(package) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _named_module(text: str) -> str | None:
    """The project module a string names (``"a.b"`` or ``"a.b:Class"``), else None."""
    if not MODULE_STRING.fullmatch(text):
        return None
    name, colon, _ = text.partition(":")
    return name if name in MODULES and (colon or "." in name) else None


@lru_cache(maxsize=None)
def imports_of(module: str) -> frozenset[str]:
    """Project modules ``module`` imports anywhere in its file, or names in a string."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, node.module, node.level)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.add(_named_module(node.value) or "")
    return frozenset(_with_parents(name) for name in found if _project_module(name))


def _project_module(name: str) -> str | None:
    """``name`` or its closest parent that is a project module (``import a.b.c`` runs ``a.b``)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in MODULES:
            return ".".join(parts[:n])
    return None


def _with_parents(name: str) -> str:
    return _project_module(name) or name


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def closure(roots: tuple[str, ...]) -> dict[str, str]:
    """Every module reached from ``roots`` (parent packages included) -> the module reaching it."""
    via = {root: "" for root in roots}
    todo = list(roots)
    while todo:
        module = todo.pop()
        parts = module.split(".")
        reached = set(imports_of(module)) | {".".join(parts[:n]) for n in range(1, len(parts))}
        for name in sorted(reached & MODULES.keys()):
            if name not in via:
                via[name] = module
                todo.append(name)
    return via


def chain(via: dict[str, str], module: str) -> list[str]:
    path = [module]
    while via.get(path[-1]):
        path.append(via[path[-1]])
    return path[::-1]


def _layer_cases() -> list[tuple[str, str]]:
    return [(module, imported) for module in MODULES for imported in sorted(imports_of(module))
            if imported.split(".")[0] in FORBIDDEN.get(module.split(".")[0], ())]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_package_imports_a_layer_above_it(package):
    upward = [f"{module} -> {imported}" for module, imported in _layer_cases() if module.split(".")[0] == package]
    assert not upward, f"{package}/ imports {', '.join(sorted(FORBIDDEN[package]))}: " + "; ".join(upward)


def test_sampling_does_not_import_training():
    via = closure(tuple(module for module in MODULES if _within(module, SAMPLING)))
    reached = sorted(module for module in via if _within(module, TRAINING))
    assert not reached, f"sampling reaches {TRAINING}: {' -> '.join(chain(via, reached[0])) if reached else ''}"


def test_the_scan_sees_local_imports_and_module_strings():
    """The scan itself: a function-local import and a "module:Class" string both count."""
    assert "model.training.train" in imports_of("model.cli")  # imported inside run_training()
    assert _named_module("stages.loudness:LoudnessExtractor") == "stages.loudness"
    assert _named_module("a calm piano") is None and _named_module("stages") is None
