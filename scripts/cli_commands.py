"""Which module and function implement ``chordflow SUB [ACTION]``, read from the source (``ast``).

``chordflow/cli.py`` imports each module of ``CLI_MODULES`` and calls its ``add_cli(subparsers)``.
Building that parser for real imports torch (a stage package ``__init__`` does), so instead
``add_cli`` is evaluated symbolically over the few argparse calls it makes: ``add_parser(NAME)``,
``add_subparsers()``, ``set_defaults(func=HANDLER)``, assignments, tuple unpacking, and calls into
project helpers that take a parser (``pipeline.run_cli.add_stage_cli``), with their string
constants. ``tests/test_dvc_deps.py`` checks the result against the real parser.
"""

from __future__ import annotations

import ast
import dataclasses
from typing import Any

from scripts.import_closure import Facts, Project, scan

CLI_MODULE = "chordflow.cli"
CLI_MODULES_NAME = "CLI_MODULES"
ADD_CLI = "add_cli"
#: How deep calls into parser-building helpers are followed.
MAX_CALL_DEPTH = 6


@dataclasses.dataclass(frozen=True)
class Handler:
    """The function ``args.func`` is: where its ``def``/``lambda`` is (its code's first line)."""

    module: str
    lineno: int
    node: ast.AST = dataclasses.field(compare=False, repr=False)


@dataclasses.dataclass(frozen=True)
class Command:
    path: tuple[str, ...]  # ("drums", "eval")
    module: str  # the CLI module whose add_cli registers it
    handler: Handler | None  # None: not found statically (then the whole module counts)


@dataclasses.dataclass(frozen=True)
class _Subparsers:
    path: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class _Parser:
    path: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class _Def:
    module: str
    node: ast.FunctionDef | ast.AsyncFunctionDef


_UNKNOWN = object()


def cli_modules(project: Project, cli_module: str = CLI_MODULE) -> tuple[str, ...]:
    """``chordflow.cli.CLI_MODULES``, read as a literal."""
    for stmt in project.tree(cli_module).body:
        target = stmt.target if isinstance(stmt, ast.AnnAssign) else (stmt.targets[0] if isinstance(stmt, ast.Assign) else None)
        if isinstance(target, ast.Name) and target.id == CLI_MODULES_NAME:
            return tuple(ast.literal_eval(stmt.value))
    raise LookupError(f"{cli_module} has no {CLI_MODULES_NAME}")


def registry_providers(project: Project, cli_module: str = CLI_MODULE) -> tuple[str, ...]:
    """Project modules the CLI module imports at its top level, for what importing them does:
    they fill registries (``import stages`` registers the built-in stages in ``pipeline.stage``)."""
    found: list[str] = []
    for stmt in project.tree(cli_module).body:
        if isinstance(stmt, ast.Import):
            found += [alias.name for alias in stmt.names if alias.name in project.modules]
        elif isinstance(stmt, ast.ImportFrom) and not stmt.level and stmt.module in project.modules:
            found.append(stmt.module)
    return tuple(found)


def top_level_defs(tree: ast.Module) -> dict[str, ast.AST]:
    return {s.name: s for s in tree.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


def first_line(node: ast.AST) -> int:
    """What ``func.__code__.co_firstlineno`` is for this def (decorators included) or lambda."""
    return min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])


class _Evaluator:
    """Runs ``add_cli`` over symbolic parser values and records the commands it registers."""

    def __init__(self, project: Project, cli_module: str) -> None:
        self.project, self.cli_module = project, cli_module
        self.commands: dict[tuple[str, ...], Handler | None] = {}

    def run(self) -> dict[tuple[str, ...], Handler | None]:
        add_cli = top_level_defs(self.project.tree(self.cli_module)).get(ADD_CLI)
        if not isinstance(add_cli, ast.FunctionDef):
            raise LookupError(f"{self.cli_module} has no {ADD_CLI}()")
        self.call(_Def(self.cli_module, add_cli), [_Subparsers(())], {}, depth=0)
        return self.commands

    def call(self, func: _Def, args: list[Any], kwargs: dict[str, Any], depth: int) -> Any:
        env = self.bind(func, args, kwargs)
        return self.block(func.module, func.node.body, env, depth)

    def bind(self, func: _Def, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        spec = func.node.args
        params = [a.arg for a in [*spec.posonlyargs, *spec.args]]
        defaults = dict(zip(params[len(params) - len(spec.defaults):], spec.defaults))
        env: dict[str, Any] = {name: self.expr(func.module, default, {}, 0) for name, default in defaults.items()}
        env.update({a.arg: self.expr(func.module, d, {}, 0) for a, d in zip(spec.kwonlyargs, spec.kw_defaults) if d})
        env.update(zip(params, args))
        env.update(kwargs)
        return env

    def block(self, module: str, body: list[ast.stmt], env: dict[str, Any], depth: int) -> Any:
        """Statements in order; the value of the first ``return`` (nested blocks are walked too)."""
        for stmt in body:
            if isinstance(stmt, ast.Return):
                return self.expr(module, stmt.value, env, depth) if stmt.value else None
            if isinstance(stmt, ast.ImportFrom):
                self.bind_import(stmt, env)
            elif isinstance(stmt, (ast.Assign, ast.AnnAssign)) and stmt.value is not None:
                value = self.expr(module, stmt.value, env, depth)
                for target in stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]:
                    self.assign(target, value, env)
            elif isinstance(stmt, ast.Expr):
                self.expr(module, stmt.value, env, depth)
            elif isinstance(stmt, (ast.If, ast.For, ast.With, ast.Try)):
                nested = [*stmt.body, *getattr(stmt, "orelse", []), *getattr(stmt, "finalbody", [])]
                result = self.block(module, nested, env, depth)
                if result is not None:
                    return result
        return None

    def bind_import(self, stmt: ast.ImportFrom, env: dict[str, Any]) -> None:
        if stmt.module in self.project.modules and not stmt.level:
            defs = top_level_defs(self.project.tree(stmt.module))
            for alias in stmt.names:
                node = defs.get(alias.name)
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    env[alias.asname or alias.name] = _Def(stmt.module, node)

    def assign(self, target: ast.expr, value: Any, env: dict[str, Any]) -> None:
        if isinstance(target, ast.Name):
            env[target.id] = value
        elif isinstance(target, (ast.Tuple, ast.List)):
            values = value if isinstance(value, tuple) and len(value) == len(target.elts) else [_UNKNOWN] * len(target.elts)
            for element, item in zip(target.elts, values):
                self.assign(element, item, env)

    def lookup(self, module: str, name: str, env: dict[str, Any]) -> Any:
        if name in env:
            return env[name]
        tree = self.project.tree(module)
        node = top_level_defs(tree).get(name)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return _Def(module, node)
        for stmt in tree.body:
            if isinstance(stmt, ast.ImportFrom):
                imported: dict[str, Any] = {}
                self.bind_import(stmt, imported)
                if name in imported:
                    return imported[name]
            if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and isinstance(getattr(stmt, "value", None), ast.Constant):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                    return stmt.value.value
        return _UNKNOWN

    def expr(self, module: str, node: ast.expr, env: dict[str, Any], depth: int) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return self.lookup(module, node.id, env)
        if isinstance(node, ast.Lambda):
            return Handler(module, node.lineno, node)
        if isinstance(node, (ast.Tuple, ast.List)):
            return tuple(self.expr(module, e, env, depth) for e in node.elts)
        if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
            values = [self.expr(module, v, env, depth) for v in node.values]
            return next((v for v in values if v is not None), None)
        if isinstance(node, ast.Call):
            return self.call_expr(module, node, env, depth)
        return _UNKNOWN

    def call_expr(self, module: str, node: ast.Call, env: dict[str, Any], depth: int) -> Any:
        args = [self.expr(module, a, env, depth) for a in node.args]
        kwargs = {k.arg: self.expr(module, k.value, env, depth) for k in node.keywords if k.arg}
        if isinstance(node.func, ast.Attribute):
            return self.method(self.expr(module, node.func.value, env, depth), node.func.attr, args, kwargs)
        callee = self.expr(module, node.func, env, depth)
        takes_parser = any(isinstance(v, (_Parser, _Subparsers)) for v in [*args, *kwargs.values()])
        if isinstance(callee, _Def) and takes_parser and depth < MAX_CALL_DEPTH:
            return self.call(callee, args, kwargs, depth + 1)
        return _UNKNOWN

    def method(self, obj: Any, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        if isinstance(obj, _Subparsers) and name == "add_parser" and args and isinstance(args[0], str):
            path = (*obj.path, args[0])
            self.commands.setdefault(path, None)
            return _Parser(path)
        if isinstance(obj, _Parser) and name == "add_subparsers":
            self.commands.pop(obj.path, None)  # a parser with actions is not a command itself
            return _Subparsers(obj.path)
        if isinstance(obj, _Parser) and name == "set_defaults" and "func" in kwargs:
            self.commands[obj.path] = self.handler(kwargs["func"])
        return _UNKNOWN

    def handler(self, value: Any) -> Handler | None:
        if isinstance(value, Handler):
            return value
        if isinstance(value, _Def):
            return Handler(value.module, first_line(value.node), value.node)
        return None


def command_table(project: Project, cli_module: str = CLI_MODULE) -> dict[tuple[str, ...], Command]:
    """Every ``chordflow`` command path -> the module registering it and its handler."""
    table: dict[tuple[str, ...], Command] = {}
    for module in cli_modules(project, cli_module):
        for path, handler in _Evaluator(project, module).run().items():
            if path in table:
                raise ValueError(f"chordflow {' '.join(path)} is registered by {table[path].module} and {module}")
            table[path] = Command(path, module, handler)
    return table


def find_command(table: dict[tuple[str, ...], Command], words: list[str]) -> Command:
    """The command that ``chordflow WORDS...`` runs (options before the first word are skipped)."""
    prefixes = {path[:n] for path in table for n in range(1, len(path) + 1)}
    path: tuple[str, ...] = ()
    for word in words:
        if not path and word.startswith("-"):
            continue
        if (*path, word) not in prefixes:
            break
        path = (*path, word)
    if path not in table:
        raise LookupError(f"`chordflow {' '.join(words)}` is not a chordflow command")
    return table[path]


def command_facts(project: Project, command: Command, table: dict[tuple[str, ...], Command]) -> Facts:
    """What running ``command`` executes in its CLI module: the module's top level, ``add_cli`` (it
    builds the parser) without the other commands' handlers, the handler, and the module's functions
    and classes these use. Other modules count whole (:func:`scripts.import_closure.close`)."""
    module = command.module
    tree = project.tree(module)
    defs = top_level_defs(tree)
    own = command.handler.node if command.handler and command.handler.module == module else None
    others = [c.handler.node for c in table.values()
              if c.module == module and c.handler and c.handler.module == module and c.handler.node is not own]
    facts = _top_level_facts(project, module, tree)
    roots = [node for node in (defs.get(ADD_CLI), own) if node is not None]
    follow = set(facts.called)
    seen: set[int] = {id(n) for n in others}
    while roots:
        node = roots.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        part = scan(project, module, [node], skip=others)
        facts.update(part)
        follow |= part.names
        roots += [defs[name] for name in follow if name in defs and id(defs[name]) not in seen]
    return facts


def _top_level_facts(project: Project, module: str, tree: ast.Module) -> Facts:
    """Code that runs when the module is imported: not function bodies (only decorators, defaults)."""
    nodes: list[ast.AST] = []
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            nodes += [*stmt.decorator_list, *stmt.args.defaults, *(d for d in stmt.args.kw_defaults if d)]
        else:
            nodes.append(stmt)
    facts = scan(project, module, nodes)
    for stmt in tree.body:
        for decorator in getattr(stmt, "decorator_list", []):
            if isinstance(decorator, ast.Name):
                facts.called.add(decorator.id)
    return facts
