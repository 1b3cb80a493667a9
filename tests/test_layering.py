"""The layers of docs/architecture.md hold: protocols/ and simulators/ never import harness/,
protocols/ never imports simulators/, and no module-level import circle exists."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("harness", "protocols", "simulators", "profiles")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def _imports(path: Path, *, module_level_only: bool) -> set[str]:
    """Every kentei module `path` imports (TYPE_CHECKING blocks and, if asked, function bodies skipped)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                if not module_level_only:
                    visit(child, top)
                continue
            inner = top and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            if isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                if top or not module_level_only:
                    found.add(child.module)
                    found.update(f"{child.module}.{alias.name}" for alias in child.names)
            elif isinstance(child, ast.Import) and (top or not module_level_only):
                found.update(alias.name for alias in child.names)
            visit(child, inner if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else top)

    visit(tree, True)
    return {name for name in found if name.split(".")[0] in PACKAGES}


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [("protocols", ("harness", "simulators")), ("simulators", ("harness",))],
)
def test_a_lower_layer_never_imports_a_higher_one(layer: str, forbidden: tuple[str, ...]) -> None:
    offending = {
        f"{name} imports {imported}"
        for name, path in _modules().items()
        if name.split(".")[0] == layer
        for imported in _imports(path, module_level_only=False)
        if imported.split(".")[0] in forbidden
    }
    assert not offending, sorted(offending)


def test_no_module_level_import_circle() -> None:
    modules = _modules()
    graph = {
        name: {m for m in _imports(path, module_level_only=True) if m in modules and m != name}
        for name, path in modules.items()
    }
    # A package's __init__ is reached through its submodules' parents: drop package -> own-child edges.
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    cycles: list[list[str]] = []

    def walk(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                walk(nxt, stack)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name, [])
    assert not cycles, [" -> ".join(c) for c in cycles]
