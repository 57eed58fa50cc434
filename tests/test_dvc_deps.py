"""dvc.yaml code deps = the import closure of each stage's commands (scripts/dvc_deps.py), so that
`dvc repro` cannot miss a code change; the closure tool itself on a tiny synthetic package; and
`python -m chordflow eval` (the command the eval stages run) running at all."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import textwrap

import pytest
import yaml

from scripts.cli_commands import cli_modules, command_table
from scripts.dvc_deps import DVC_FILE, ROOT, Analyzer, check, explain, is_code_dep, load_stages, stage_report
from scripts.dvc_yaml_deps import rewrite_deps
from scripts.import_closure import Facts, Project, close

STAGES = sorted(load_stages(ROOT / DVC_FILE))
FIX = "run `python scripts/dvc_deps.py --write` (or `--check` to see why)"

# ----------------------------------------------------------------------------- the real dvc.yaml


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer.at(ROOT)


@pytest.mark.parametrize("stage", STAGES)
def test_stage_deps_cover_every_file_its_commands_import(analyzer, stage):
    report = stage_report(analyzer, stage, load_stages(ROOT / DVC_FILE)[stage])
    assert not report.uncovered, f"{stage}: no dep covers {list(report.uncovered)}; {FIX}"


@pytest.mark.parametrize("stage", STAGES)
def test_stage_code_deps_are_all_imported(analyzer, stage):
    report = stage_report(analyzer, stage, load_stages(ROOT / DVC_FILE)[stage])
    assert not report.stale, f"{stage}: {list(report.stale)} hold code its commands never import; {FIX}"


def _real_handlers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], tuple[str, int]]:
    """command path -> (module, first line) of ``args.func`` in a real parser."""
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers:
        func = parser.get_default("func")
        func = getattr(func, "func", func)  # functools.partial
        return {path: (func.__module__, func.__code__.co_firstlineno)}
    found: dict[tuple[str, ...], tuple[str, int]] = {}
    for name, child in subparsers[0].choices.items():
        found.update(_real_handlers(child, (*path, name)))
    return found


def test_static_command_table_matches_the_real_parser(analyzer):
    """The ast reading of add_cli gives the same commands, registering modules and handlers as
    building each CLI module's parser for real (which imports torch, hence not used by the tool)."""
    real = {}
    for module in cli_modules(analyzer.project):
        root = argparse.ArgumentParser()
        importlib.import_module(module).add_cli(root.add_subparsers())
        real.update({path: (module, handler) for path, handler in _real_handlers(root).items()})
    # read the sources now, not when the fixture was made: the tree may have been edited since
    static = {path: (c.module, c.handler and (c.handler.module, c.handler.lineno))
              for path, c in command_table(analyzer.project).items()}
    assert static == real


def test_check_command_passes_on_the_repository():
    proc = subprocess.run([sys.executable, "scripts/dvc_deps.py", "--check"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ----------------------------------------------------------------------------- a synthetic package

SYNTHETIC = {
    "app/__init__.py": '"""Synthetic app."""\n__version__ = "1.0"\n',
    "app/README.md": "docs, never a resource\n",
    "app/cli.py": 'CLI_MODULES = ("app.commands",)\n',
    "app/commands.py": '''
        from app import base  # top level: runs for every command

        NAME = "alpha"

        def add_cli(subparsers):
            from app.parsers import add_tool
            actions = add_tool(subparsers, "tool")
            go = actions.add_parser("go")
            go.set_defaults(func=_go)
            other = actions.add_parser("other")
            other.set_defaults(func=_other)

        def _go(args):
            from app.stagelib import make  # function-local import
            return _helper(make(NAME))

        def _helper(value):
            from app import submod  # from-import of a submodule
            return submod

        def _other(args):
            import app.heavy  # only `tool other` runs this
            return 0
        ''',
    "app/parsers.py": '''
        def add_tool(subparsers, name):
            parser = subparsers.add_parser(name)
            actions = parser.add_subparsers()
            actions.add_parser("run").set_defaults(func=lambda args: 0)
            return actions
        ''',
    "app/base.py": "from .util import THING  # relative import\n",
    "app/util.py": "THING = 1\n",
    "app/submod.py": "X = 1\n",
    "app/heavy.py": "Y = 1\n",
    "app/typing_only.py": "Z = 1\n",
    "app/stagelib.py": '''
        import importlib
        from typing import TYPE_CHECKING

        if TYPE_CHECKING:
            from app import typing_only

        _REGISTRY = {"alpha": "app.plugins.alpha:Alpha", "beta": "app.plugins.beta:Beta"}

        def make(name):
            module, _, cls = _REGISTRY[name].partition(":")
            return getattr(importlib.import_module(module), cls)
        ''',
    "app/plugins/__init__.py": '"""Plugins."""\n',
    "app/plugins/alpha.py": '''
        from importlib import resources

        class Alpha:
            table = resources.files("app").joinpath("resources/table.json")
        ''',
    "app/plugins/beta.py": "class Beta: ...\n",
    "app/resources/table.json": "{}\n",
    "app/resources/unused.json": "{}\n",
}


@pytest.fixture
def app(tmp_path) -> Analyzer:
    for rel, text in SYNTHETIC.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return Analyzer(Project(tmp_path, ("app",)), cli_module="app.cli")


def test_command_table_reads_add_cli_and_its_parser_helpers(app):
    table = command_table(app.project, "app.cli")
    assert sorted(table) == [("tool", "go"), ("tool", "other"), ("tool", "run")]
    assert {path: (c.module, c.handler.module) for path, c in table.items()} == {
        ("tool", "go"): ("app.commands", "app.commands"), ("tool", "other"): ("app.commands", "app.commands"),
        ("tool", "run"): ("app.commands", "app.parsers")}  # the lambda in the helper


def test_closure_of_a_command(app):
    closure = app.command_closure(["chordflow", "tool", "go", "--flag"])
    assert closure.modules >= {"app.commands", "app.base", "app.parsers", "app.stagelib", "app.submod"}
    assert "app.util" in closure.modules  # relative import
    assert "app.plugins.alpha" in closure.modules and "app.plugins" in closure.modules  # registry key NAME
    assert closure.via["app.plugins.alpha"] == "registry:alpha"
    assert closure.chain("app.submod") == ["app.submod"] and closure.chain("app.util") == ["app.base", "app.util"]
    assert "app.plugins.beta" not in closure.modules  # "beta" is mentioned nowhere
    assert "app.heavy" not in closure.modules  # only the other command's handler imports it
    assert "app.typing_only" not in closure.modules  # if TYPE_CHECKING: never runs
    # trivial package __init__ files (docstring, __version__) and docs are no deps; the resource is
    assert closure.files == {"app/commands.py", "app/base.py", "app/util.py", "app/parsers.py", "app/stagelib.py",
                             "app/submod.py", "app/plugins/alpha.py", "app/resources/table.json"}


def test_other_commands_reach_what_their_handlers_import(app):
    assert "app.heavy" in app.command_closure(["chordflow", "tool", "other"]).modules
    run = app.command_closure(["chordflow", "tool", "run"]).modules
    assert "app.parsers" in run and "app.stagelib" not in run


def test_registry_entry_selected_by_a_command_word(app):
    closure = close(app.project, Facts(), {"app.stagelib"}, mentions=["beta"])
    assert "app.plugins.beta" in closure.modules and "app.plugins.alpha" not in closure.modules


def test_compact_writes_a_folder_only_when_every_file_is_reached(app):
    files = app.stage_files("chordflow tool go")
    deps = app.compact(files)
    assert "app/plugins/alpha.py" in deps and "app/plugins" not in deps  # beta.py is not reached
    assert "app/resources/table.json" in deps and "app/resources" not in deps
    assert app.compact(files | {"app/plugins/beta.py", "app/resources/unused.json"})[-2:] == [
        "app/plugins", "app/resources"]


def test_stage_report_finds_missing_and_stale_deps(app):
    stage = {"cmd": "chordflow tool go", "deps": ["data/in.csv", "app/commands.py", "app/heavy.py", "app/plugins"]}
    report = stage_report(app, "s", stage)
    assert "app/stagelib.py" in report.uncovered and "app/commands.py" not in report.uncovered
    assert report.stale == ("app/heavy.py", "app/plugins")  # not imported; beta.py is not reached


def test_why_prints_the_import_chain(app, tmp_path, capsys):
    dvc_file = tmp_path / "dvc.yaml"
    dvc_file.write_text("stages:\n  s:\n    cmd: chordflow tool go\n    deps: [app/commands.py]\n")
    explain(app, dvc_file, "app/plugins/alpha.py")
    assert capsys.readouterr().out == "s: `chordflow tool go ...`: registry:alpha -> app.plugins.alpha\n"


DVC_TEXT = """\
# head comment
stages:
  a:
    cmd: chordflow tool go
    deps:
      - data/in.csv  # the input
      # a comment line
      - app/old.py
      - "data/quoted.csv"
    outs: [out]
  b:
    cmd: chordflow tool other
    deps: [app/x.py, data/b.csv]  # trailing
"""


def test_rewrite_replaces_code_deps_and_keeps_the_rest():
    wanted = {"a": ["app/base.py", "app/plugins"], "b": ["app/heavy.py"]}
    text = rewrite_deps(DVC_TEXT, wanted, lambda dep: dep.startswith("app/"))
    assert text == DVC_TEXT.replace("      - app/old.py\n", "").replace(
        '      - "data/quoted.csv"\n', '      - "data/quoted.csv"\n      - app/base.py\n      - app/plugins\n').replace(
        "[app/x.py, data/b.csv]", "[data/b.csv, app/heavy.py]")
    assert rewrite_deps(text, wanted, lambda dep: dep.startswith("app/")) == text  # idempotent
    assert yaml.safe_load(text)["stages"]["a"]["outs"] == ["out"]


def _without_code_deps(stage: dict) -> dict:
    return {**stage, "deps": [d for d in stage["deps"] if not is_code_dep(d)]}


def test_rewrite_of_the_repository_file_changes_only_code_deps(analyzer):
    text = (ROOT / DVC_FILE).read_text()
    wanted = {r.stage: list(r.wanted) for r in check(analyzer, ROOT / DVC_FILE)}
    once = rewrite_deps(text, wanted, is_code_dep)
    assert rewrite_deps(once, wanted, is_code_dep) == once
    before, after = yaml.safe_load(text)["stages"], yaml.safe_load(once)["stages"]
    assert {n: _without_code_deps(s) for n, s in after.items()} == {n: _without_code_deps(s) for n, s in before.items()}
    comments = [line for line in text.splitlines() if "#" in line]
    assert comments == [line for line in once.splitlines() if "#" in line]


# ----------------------------------------------------------------------------- python -m chordflow eval


def _eval_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chordflow", "eval", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_eval_cli_module_runs_help():
    proc = _eval_cli("--help")
    assert proc.returncode == 0, proc.stderr
    assert "adherence" in proc.stdout and "score" in proc.stdout


def test_eval_cli_module_dispatches_to_a_handler(tmp_path):
    proc = _eval_cli("adherence", "--generated", str(tmp_path / "missing.json"), "--ceiling",
                     str(tmp_path / "missing.json"), "--out", str(tmp_path / "out.json"))
    assert proc.returncode == 2 and "chordflow eval:" in proc.stderr and "Traceback" not in proc.stderr
