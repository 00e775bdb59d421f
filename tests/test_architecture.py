"""The architecture, read from the imports: models ← catalogs ← planner ← api, one way, and
no import cycles between modules (function-level imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"models": 0, "catalogs": 1, "planner": 2, "api": 3}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(("rackplan", *parts))


def _imports(path: Path) -> set[str]:
    """rackplan modules ``path`` imports anywhere (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n for n in names if n.startswith("rackplan.")}
    return found


def _graph() -> dict[str, set[str]]:
    files = [p for layer in LAYERS for p in (ROOT / layer).rglob("*.py")]
    modules = {_module_name(p): p for p in files}
    graph = {}
    for name, path in modules.items():
        # "from rackplan.planner import x" may name a module or an attribute: keep modules
        graph[name] = {m for m in _imports(path) if m in modules and m != name}
    return graph


def _layer(module: str) -> int:
    return LAYERS[module.split(".")[1]]


def test_dependencies_point_one_way():
    wrong = [
        f"{module} imports {target}"
        for module, targets in _graph().items()
        for target in targets
        if _layer(target) > _layer(module)
    ]
    assert wrong == []


def test_no_import_cycles():
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
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
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert cycles == []


def test_the_graph_sees_real_imports():
    """Guard against a checker that passes because it reads nothing."""
    graph = _graph()
    assert "rackplan.models.roofline" in graph["rackplan.models.operating_points"]
    assert "rackplan.planner.core.run" in graph["rackplan.planner.io.export"]
    assert len(graph) > 40


def test_the_planner_core_and_file_io_never_import_the_command_line():
    wrong = [
        f"{module} imports {target}"
        for module, targets in _graph().items()
        if module.startswith(("rackplan.planner.core.", "rackplan.planner.io."))
        for target in targets
        if target.startswith("rackplan.planner.cli")
    ]
    assert wrong == []
    assert any(m.startswith("rackplan.planner.core.") for m in _graph())
