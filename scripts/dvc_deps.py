"""Code dependencies of the dvc.yaml stages, derived from what their commands import.

    python scripts/dvc_deps.py            # each stage's code deps as they should be
    python scripts/dvc_deps.py --check    # differences with dvc.yaml (exit 1 if any)
    python scripts/dvc_deps.py --write    # rewrite the code entries of every `deps:` in dvc.yaml
    python scripts/dvc_deps.py --why stages/melody/jasco.py   # which stages reach it, and how

A stage's code is the static import closure (:mod:`scripts.import_closure`) of each of its
commands: for ``chordflow SUB [ACTION]`` the module registering the subcommand (with only the code
that command runs, :mod:`scripts.cli_commands`) and everything it imports; for ``python -m MODULE``
that module. ``chordflow/cli.py`` is left out on purpose: it only builds the parser and calls
``args.func``, so a help text or a new subcommand must not rerun every stage. What it imports to
fill registries (``stages``, whose import registers the built-in stages in ``pipeline.stage``)
counts for a command that reaches the registry it fills (a module the provider imports), and its
entries by key as usual (:mod:`scripts.import_closure`). The closure is written compactly: a
folder when every source file under it is reached, else the files.

A dep under a project package (``chordflow/``, ``pipeline/``, ``stages/``, ``model/``) is a code
dep; every other dep (data, manifests, ...) is kept as written.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

if __package__ in (None, ""):  # run as `python scripts/dvc_deps.py`: make `scripts.` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml

from scripts.cli_commands import CLI_MODULE, Command, command_facts, command_table, find_command, registry_providers
from scripts.dvc_yaml_deps import dep_group, rewrite_deps
from scripts.import_closure import Closure, Facts, Project, close, module_facts

ROOT = Path(__file__).resolve().parents[1]
PACKAGES: tuple[str, ...] = ("chordflow", "music", "pipeline", "stages", "model")
DVC_FILE = "dvc.yaml"
CHORDFLOW = "chordflow"
PYTHONS = ("python", "python3")
#: Shell operators that separate commands inside one ``cmd`` string.
SHELL_SEPARATORS = frozenset({"&&", "||", ";", "|"})


def is_code_dep(dep: str, packages: tuple[str, ...] = PACKAGES) -> bool:
    """A dep inside a project package (source, package folder or resource)."""
    return PurePosixPath(dep).parts[0] in packages


def folder_order(dep: str) -> tuple[str, str]:
    """Sort key: the files of one folder together, ``pipeline/x.py`` before ``pipeline/corpus/a.py``;
    a folder dep sorts as a folder of its own (see :func:`scripts.dvc_yaml_deps.dep_group`)."""
    return dep_group(dep), PurePosixPath(dep).name


def split_commands(cmd: str | list[str]) -> list[list[str]]:
    """A stage's ``cmd`` (one string or a list) as argv lists, split at shell operators."""
    argvs: list[list[str]] = []
    for line in [cmd] if isinstance(cmd, str) else cmd:
        argv: list[str] = []
        for word in shlex.split(line):
            if word in SHELL_SEPARATORS:
                argvs.append(argv)
                argv = []
            else:
                argv.append(word)
        argvs.append(argv)
    return [argv for argv in argvs if argv]


@dataclasses.dataclass
class Analyzer:
    """Closures of commands over one source tree (the command table is read once)."""

    project: Project
    cli_module: str = CLI_MODULE

    @classmethod
    def at(cls, root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> "Analyzer":
        return cls(Project(root, packages))

    @cached_property
    def table(self) -> dict[tuple[str, ...], Command]:
        return command_table(self.project, self.cli_module)

    def command_closure(self, argv: list[str]) -> Closure:
        """What one command line reaches; its words also select registry entries (stage names)."""
        program = PurePosixPath(argv[0]).name
        if program == CHORDFLOW:
            command = find_command(self.table, argv[1:])
            facts = command_facts(self.project, command, self.table)
            handler = command.handler
            # a handler not found statically: the whole registering module counts
            whole = {command.module} if handler is None else {handler.module} - {command.module}
            return self._with_providers(facts, whole, argv, command.module)
        if program.startswith(PYTHONS) and len(argv) > 2 and argv[1] == "-m" and argv[2] in self.project.modules:
            return close(self.project, Facts(), {argv[2]}, argv)
        raise ValueError(f"cannot tell what `{shlex.join(argv)}` runs (only `chordflow ...` and `python -m ...`)")

    @cached_property
    def providers(self) -> tuple[str, ...]:
        return registry_providers(self.project, self.cli_module)

    def _with_providers(self, facts: Facts, whole: set[str], argv: list[str], entry: str) -> Closure:
        """The closure of a ``chordflow`` command, with each registry provider of the CLI module
        whose registry (a module the provider imports) the command reaches."""
        while True:
            closure = close(self.project, facts, whole, argv, entry=entry)
            wanted = {p for p in self.providers if p not in closure.modules
                      and module_facts(self.project, p).imports & closure.modules}
            if not wanted:
                return closure
            whole = whole | wanted

    def stage_files(self, cmd: str | list[str]) -> set[str]:
        """Repo-relative source and resource files reached by every command of a stage."""
        files: set[str] = set()
        for argv in split_commands(cmd):
            files |= self.command_closure(argv).files
        return files

    @cached_property
    def source_files(self) -> set[str]:
        """Every file a closure can hold: non-trivial modules and resources."""
        modules = {self.project.rel(path) for m, path in self.project.modules.items() if not self.project.is_trivial(m)}
        return modules | set(self.project.resources)

    def compact(self, files: set[str]) -> list[str]:
        """The fewest deps covering ``files`` and nothing else: folders where every file is reached."""
        deps = [dep for package in self.project.packages for dep in self._compact(package, files)]
        return sorted(deps, key=folder_order)

    def _compact(self, folder: str, files: set[str]) -> list[str]:
        under = {f for f in self.source_files if f.startswith(folder + "/")}
        chosen = under & files
        if not chosen:
            return []
        if chosen == under:
            return [folder]
        direct = [f for f in chosen if str(PurePosixPath(f).parent) == folder]
        subfolders = {f[len(folder) + 1:].split("/")[0] for f in under if f.count("/") > folder.count("/") + 1}
        return direct + [dep for sub in sorted(subfolders) for dep in self._compact(f"{folder}/{sub}", files)]

    def is_code(self, dep: str) -> bool:
        return is_code_dep(dep, self.project.packages)

    def files_of(self, dep: str) -> set[str]:
        """Source files a dep stands for (none for a path that is no source file or folder)."""
        return {f for f in self.source_files if f == dep or f.startswith(dep.rstrip("/") + "/")}


@dataclasses.dataclass(frozen=True)
class StageReport:
    """How a stage's code deps differ from its commands' closure."""

    stage: str
    wanted: tuple[str, ...]  # the compact code deps
    uncovered: tuple[str, ...]  # reached files no dep covers
    stale: tuple[str, ...]  # listed code deps that hold a file the commands do not reach (or none)

    @property
    def ok(self) -> bool:
        return not self.uncovered and not self.stale


def load_stages(dvc_file: Path) -> dict[str, dict[str, Any]]:
    return dict(yaml.safe_load(dvc_file.read_text(encoding="utf-8"))["stages"])


def stage_report(analyzer: Analyzer, name: str, stage: dict[str, Any]) -> StageReport:
    files = analyzer.stage_files(stage["cmd"])
    code_deps = [d for d in stage.get("deps") or [] if analyzer.is_code(d)]
    covered = set().union(*(analyzer.files_of(d) for d in code_deps)) if code_deps else set()
    stale = [d for d in code_deps if not analyzer.files_of(d) or not analyzer.files_of(d) <= files]
    return StageReport(name, tuple(analyzer.compact(files)), tuple(sorted(files - covered)), tuple(stale))


def check(analyzer: Analyzer, dvc_file: Path) -> list[StageReport]:
    return [stage_report(analyzer, name, stage) for name, stage in load_stages(dvc_file).items()]


def format_report(report: StageReport) -> str:
    lines = [f"{report.stage}:"]
    lines += [f"  missing: {f}" for f in report.uncovered]
    lines += [f"  stale:   {d} (holds code its commands do not import)" for d in report.stale]
    return "\n".join(lines)


def write(analyzer: Analyzer, dvc_file: Path) -> bool:
    """Rewrite the code deps of every stage in place; True if the file changed."""
    text = dvc_file.read_text(encoding="utf-8")
    wanted = {r.stage: list(r.wanted) for r in check(analyzer, dvc_file)}
    new = rewrite_deps(text, wanted, analyzer.is_code)
    if new != text:
        dvc_file.write_text(new, encoding="utf-8")
    return new != text


def module_name(path_or_module: str) -> str:
    """``stages/melody/jasco.py`` or ``stages.melody.jasco`` -> ``stages.melody.jasco``."""
    path = PurePosixPath(path_or_module)
    if path.suffix != ".py":
        return path_or_module
    parts = path.with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def explain(analyzer: Analyzer, dvc_file: Path, target: str) -> int:
    """Print how each stage's commands reach ``target``: the chain of importing modules."""
    module = module_name(target)
    found = 0
    for name, stage in load_stages(dvc_file).items():
        for argv in split_commands(stage["cmd"]):
            closure = analyzer.command_closure(argv)
            if module in closure.modules:
                found += 1
                chain = closure.chain(module)
                start = closure.via[chain[0]]  # "seed" (the command's own code) or "registry:KEY"
                print(f"{name}: `{' '.join(argv[:3])} ...`: {start} -> {' -> '.join(chain)}")
    if not found:
        print(f"no stage reaches {module}")
    return 0


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="print the differences with dvc.yaml; exit 1 if any")
    mode.add_argument("--write", action="store_true", help="rewrite the code deps in dvc.yaml")
    mode.add_argument("--why", metavar="FILE", help="how each stage's commands reach FILE (path or module)")
    parser.add_argument("--dvc-file", type=Path, default=ROOT / DVC_FILE)
    args = parser.parse_args(None if argv is None else list(argv))
    analyzer = Analyzer.at(args.dvc_file.resolve().parent)
    if args.why:
        return explain(analyzer, args.dvc_file, args.why)
    if args.write:
        changed = write(analyzer, args.dvc_file)
        print(f"{args.dvc_file}: {'code deps rewritten' if changed else 'already up to date'}")
        return 0
    reports = check(analyzer, args.dvc_file)
    if not args.check:
        for report in reports:
            print(f"{report.stage}: {', '.join(report.wanted)}")
        return 0
    bad = [r for r in reports if not r.ok]
    for report in bad:
        print(format_report(report))
    print(f"{len(bad)} of {len(reports)} stages have code deps that differ from their imports"
          + ("; fix: python scripts/dvc_deps.py --write" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
