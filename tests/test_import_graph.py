"""The import graph of ``src/fsdkit`` has no cycle (docs/architecture.md: dependencies point one way).

Every import counts — a function-level import that hides a circle is still a circle — and importing a module
imports its package first (``fsdkit.memory.build`` runs ``fsdkit/memory/__init__.py``); only ``TYPE_CHECKING``
blocks are skipped.
"""

from __future__ import annotations

import ast
from pathlib import Path

import fsdkit

SRC = Path(fsdkit.__file__).resolve().parent


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _nodes(tree: ast.AST):
    """Every node of ``tree`` outside ``if TYPE_CHECKING:`` blocks."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        yield node
        yield from _nodes(node)


def module_level_imports(path: Path, modules: set[str]) -> set[str]:
    """The fsdkit modules ``path`` imports anywhere in it (``from pkg import sub`` counts as ``pkg.sub``), each with
    the packages above it (their ``__init__`` runs first)."""
    out: set[str] = set()
    for node in _nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names if alias.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fsdkit"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in modules else node.module)
    with_packages = set(out)
    for name in out:
        parts = name.split(".")
        with_packages |= {".".join(parts[:i]) for i in range(2, len(parts))}
    return with_packages & modules


def ancestors(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (a path that returns to its first node), or None (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for name in sorted(graph):
        if name not in state and (found := visit(name)):
            return found
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_import_graph_has_no_cycle():
    paths = {module_name(p): p for p in SRC.rglob("*.py")}
    # a module's own packages are not its imports: their __init__ runs before it, importing it is their business
    graph = {name: module_level_imports(path, set(paths)) - {name} - ancestors(name) for name, path in paths.items()}
    assert "fsdkit.losses.registry" in graph["fsdkit.losses.terms.pkd"]  # the graph was read
    assert "fsdkit.sweep" in graph["fsdkit.cli"]  # an import inside a function is an edge too
    assert "fsdkit.memory" in graph["fsdkit.training.teacher_memory"]  # a package init counts as an import
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
