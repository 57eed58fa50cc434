"""Static import closure of a project's modules: ``ast`` only, nothing of the project is imported.

What counts as "reaching" a project module (all of it, not only the top of the file):

* ``import a.b``, ``from a import b`` (``b`` a submodule or a name), relative imports, imports inside
  functions; the parent packages of every reached module (Python runs their ``__init__``);
* a string that names a module, ``"a.b"`` or ``"a.b:Class"`` (``importlib.import_module`` arguments,
  lazily imported module lists);
* a *registry* entry: a dict literal of ``{"key": "a.b:Class", ...}`` is a table of modules imported
  by key at run time, so an entry is reached only when its key is *mentioned* in the closure: as a
  string, a dataclass field name (a params key) or a keyword argument name (a dict key); callers
  add the command-line words. A command that creates the ``chords`` stage reaches
  ``stages.chords`` without reaching every registered stage. A key that only comes from data (a
  params value, a checkpoint) and is written nowhere in the code is not seen.
* a resource: a non-Python file inside a package, reached when a string of a reached module names it
  (its path, or the end of its path, e.g. ``"resources/table.json"``).

Not followed: ``if TYPE_CHECKING:`` and ``if __name__ == "__main__":`` bodies (they never run when the
module is imported). An ``__init__.py`` holding nothing but a docstring and literal dunders
(``__version__``) is left out of the files: it runs, but nothing can depend on it.
"""

from __future__ import annotations

import ast
import dataclasses
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Iterable

#: Non-Python files inside packages that are documentation, never loaded by code.
DOC_SUFFIXES: frozenset[str] = frozenset({".md", ".rst", ".txt"})
SKIPPED_DIRS: frozenset[str] = frozenset({"__pycache__"})


@dataclasses.dataclass
class Facts:
    """What a piece of code reaches: modules, mentioned words, registries, referenced names."""

    imports: set[str] = dataclasses.field(default_factory=set)
    mentions: set[str] = dataclasses.field(default_factory=set)
    registries: dict[str, set[str]] = dataclasses.field(default_factory=dict)  # key -> modules
    names: set[str] = dataclasses.field(default_factory=set)  # loaded names (for call following)
    called: set[str] = dataclasses.field(default_factory=set)  # names called or used as decorators

    def update(self, other: "Facts") -> None:
        self.imports |= other.imports
        self.mentions |= other.mentions
        self.names |= other.names
        self.called |= other.called
        for key, modules in other.registries.items():
            self.registries.setdefault(key, set()).update(modules)


@dataclasses.dataclass
class Project:
    """The source tree: its top-level packages' modules and resource files."""

    root: Path
    packages: tuple[str, ...]

    @cached_property
    def modules(self) -> dict[str, Path]:
        """Dotted module name -> file, for every ``.py`` under the packages."""
        found: dict[str, Path] = {}
        for package in self.packages:
            for path in sorted((self.root / package).rglob("*.py")):
                parts = path.relative_to(self.root).with_suffix("").parts
                if SKIPPED_DIRS.isdisjoint(parts):
                    found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
        return found

    @cached_property
    def resources(self) -> tuple[str, ...]:
        """Repo-relative paths of the non-Python, non-documentation files inside the packages."""
        return tuple(sorted(
            self.rel(path) for package in self.packages for path in (self.root / package).rglob("*")
            if path.is_file() and path.suffix not in {".py", ".pyc", *DOC_SUFFIXES}
            and SKIPPED_DIRS.isdisjoint(path.parts)))

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def is_package(self, module: str) -> bool:
        return self.modules[module].name == "__init__.py"

    def tree(self, module: str) -> ast.Module:
        return _parse(self.modules[module])

    def is_trivial(self, module: str) -> bool:
        """An ``__init__.py`` with only a docstring and literal dunders: running it changes nothing."""
        body = self.tree(module).body
        return self.is_package(module) and all(_is_docstring(stmt) or _is_dunder_literal(stmt) for stmt in body)

    def module_named_by(self, text: str) -> str | None:
        """The module a string names: ``"a.b"`` (dotted) or ``"a.b:attr"``; else None."""
        name, colon, attr = text.partition(":")
        if colon and not attr.isidentifier():
            return None
        if name in self.modules and (colon or "." in name):
            return name
        return None


_TREES: dict[Path, tuple[float, ast.Module]] = {}


def _parse(path: Path) -> ast.Module:
    """Parsed file, cached per modification time (other people edit the tree while we run)."""
    mtime = path.stat().st_mtime
    cached = _TREES.get(path)
    if cached is None or cached[0] != mtime:
        cached = (mtime, ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        _TREES[path] = cached
    return cached[1]


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def _is_dunder_literal(stmt: ast.stmt) -> bool:
    """``__version__ = "1.0"``, ``__all__ = [...]``: package metadata that no code path depends on."""
    return (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
            and stmt.targets[0].id.startswith("__") and stmt.targets[0].id.endswith("__")
            and _is_literal(stmt.value))


def _is_literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except ValueError:
        return False
    return True


def _never_runs_on_import(test: ast.expr) -> bool:
    """``TYPE_CHECKING`` / ``typing.TYPE_CHECKING`` / ``__name__ == "__main__"``."""
    if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
        return True
    if isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING":
        return True
    return (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"
            and len(test.comparators) == 1 and isinstance(test.comparators[0], ast.Constant)
            and test.comparators[0].value == "__main__")


class _Scanner(ast.NodeVisitor):
    """Collects :class:`Facts` from the nodes it visits, skipping the nodes in ``skip``."""

    def __init__(self, project: Project, module: str, skip: Iterable[ast.AST] = ()) -> None:
        self.project, self.module, self.facts = project, module, Facts()
        self.skip = {id(node) for node in skip}

    def visit(self, node: ast.AST) -> None:
        if id(node) not in self.skip:
            super().visit(node)

    def _add_module(self, name: str | None) -> bool:
        if name in self.project.modules:
            self.facts.imports.add(name)
            return True
        return False

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            # `import a.b.c` runs a, a.b and a.b.c: the closure adds the parent packages
            parts = alias.name.split(".")
            for n in range(len(parts), 0, -1):
                if self._add_module(".".join(parts[:n])):
                    break

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = self._absolute(node.module, node.level)
        if base is None:
            return
        self._add_module(base)
        for alias in node.names:
            if alias.name != "*":
                self._add_module(f"{base}.{alias.name}")  # `from pkg import submodule`

    def _absolute(self, module: str | None, level: int) -> str | None:
        if not level:
            return module
        package = self.module.split(".")
        if not self.project.is_package(self.module):
            package = package[:-1]
        if level - 1 > len(package) - 1:
            return None
        base = package[:len(package) - (level - 1)]
        return ".".join(base + ([module] if module else []))

    def visit_If(self, node: ast.If) -> None:
        if _never_runs_on_import(node.test):
            for stmt in node.orelse:
                self.visit(stmt)
        else:
            self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        self._assignment(node.targets, node.value)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if isinstance(node.target, ast.Name):  # a dataclass field: a params.yaml key, a dict key
            self.facts.mentions.add(node.target.id)
        self._assignment([node.target], node.value)

    def _assignment(self, targets: list[ast.expr], value: ast.expr | None) -> None:
        registry = self._registry(value)
        if registry is None:
            for child in [*targets, *([value] if value is not None else [])]:
                self.visit(child)
            return
        for target in targets:
            self.visit(target)
        for key, module in registry.items():
            self.facts.registries.setdefault(key, set()).add(module)

    def _registry(self, value: ast.expr | None) -> dict[str, str] | None:
        """``{"key": "module:Class", ...}`` (every key a string, every value naming a module)."""
        if not isinstance(value, ast.Dict) or not value.keys:
            return None
        entries: dict[str, str] = {}
        for key, item in zip(value.keys, value.values):
            if not (isinstance(key, ast.Constant) and isinstance(key.value, str)
                    and isinstance(item, ast.Constant) and isinstance(item.value, str)):
                return None
            module = self.project.module_named_by(item.value)
            if module is None:
                return None
            entries[key.value] = module
        return entries

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str):
            self.facts.mentions.add(node.value)
            self._add_module(self.project.module_named_by(node.value))

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self.facts.names.add(node.id)

    def visit_keyword(self, node: ast.keyword) -> None:
        if node.arg:  # `dict(chords=...)`, `**kwargs`: the name becomes a string key
            self.facts.mentions.add(node.arg)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Name):
            self.facts.called.add(node.func.id)
        self.generic_visit(node)


def scan(project: Project, module: str, nodes: Iterable[ast.AST], skip: Iterable[ast.AST] = ()) -> Facts:
    """Facts of some nodes of ``module``'s tree."""
    scanner = _Scanner(project, module, skip)
    for node in nodes:
        scanner.visit(node)
    return scanner.facts


_FACTS: dict[tuple[Path, str], tuple[ast.Module, Facts]] = {}


def module_facts(project: Project, module: str) -> Facts:
    """Facts of a whole module (every function body included: imports inside functions count).

    Cached per parsed tree, which :func:`_parse` renews when the file changes; callers only read."""
    tree = project.tree(module)
    cached = _FACTS.get((project.root, module))
    if cached is None or cached[0] is not tree:
        cached = (tree, scan(project, module, [tree]))
        _FACTS[(project.root, module)] = cached
    return cached[1]


def parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:n]) for n in range(1, len(parts))]


@dataclasses.dataclass
class Closure:
    """Reached modules and resources; ``files`` are the repo-relative paths a change to which matters.

    ``via`` says why each module is in: the module that imports it (or ``registry:KEY`` / ``seed``)."""

    project: Project
    modules: set[str]
    resources: set[str]
    via: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def files(self) -> set[str]:
        code = {self.project.rel(self.project.modules[m]) for m in self.modules if not self.project.is_trivial(m)}
        return code | self.resources

    def chain(self, module: str) -> list[str]:
        """``[seed, ..., module]``: how ``module`` is reached."""
        path = [module]
        while self.via.get(path[-1], "seed") in self.project.modules and len(path) <= len(self.via):
            path.append(self.via[path[-1]])
        return path[::-1]


def close(project: Project, seed: Facts, modules: Iterable[str] = (), mentions: Iterable[str] = (),
          entry: str | None = None) -> Closure:
    """Everything reached from ``seed`` plus whole ``modules``.

    ``seed`` holds the facts of the part of ``entry`` that runs: ``entry`` is in the closure but is
    scanned whole only if a reached module imports it. ``mentions`` are extra words that select
    registry entries (e.g. a command line's words)."""
    facts = Facts()
    facts.update(seed)
    facts.mentions |= set(mentions)
    whole = set(modules)
    via = {m: "seed" for m in {*whole, *seed.imports, *([entry] if entry else [])}}
    scanned: set[str] = set()
    imported: set[str] = set()  # by a scanned module, so ``entry`` counts whole once in here
    while True:
        for module in list(via):
            for parent in parents(module):
                if parent in project.modules:
                    via.setdefault(parent, module)
        for key, targets in facts.registries.items():
            for target in sorted(targets) if key in facts.mentions else ():
                via.setdefault(target, f"registry:{key}")
        todo = sorted(m for m in via if m not in scanned and (m != entry or m in whole or m in imported))
        if not todo:
            return Closure(project, set(via), _resources(project, facts.mentions), via)
        for module in todo:
            scanned.add(module)
            found = module_facts(project, module)
            facts.update(found)
            imported |= found.imports
            for name in sorted(found.imports):
                via.setdefault(name, module)


def _resources(project: Project, mentions: set[str]) -> set[str]:
    """Resource files named by a string: its whole path or a tail of it that includes its file name."""
    named = {text.strip("/") for text in mentions if "." in PurePosixPath(text).name}
    return {res for res in project.resources if any(res == t or res.endswith("/" + t) for t in named if t)}
