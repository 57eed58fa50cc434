"""No import cycles between project modules, read statically (``ast``).

Every import counts: at the top of a file, inside a function (a lazy import hides a cycle from the
interpreter but not from a reader, who still has to hold both files in their head at once), and a
module named in a string (``importlib`` targets, "module:Class" registry entries). A package's
``__init__`` re-exporting its own submodules is not a cycle: the edges from a package to its
submodules are left out, since importing a submodule runs its package first anyway.
"""

from __future__ import annotations

from tests.test_layers import MODULES, imports_of


def _edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module in MODULES:
        graph[module] = {name for name in imports_of(module)
                         if name != module and name in MODULES and not name.startswith(module + ".")}
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components of more than one module (each one is a cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_two_project_modules_import_each_other_even_lazily():
    cycles = strongly_connected(_edges())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(cycle) for cycle in cycles)


def test_the_scan_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(graph) == [["a", "b", "c"]]
