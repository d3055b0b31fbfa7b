"""The import graph of the project's own packages, read from the source (imports inside functions included):
no cycle anywhere, the contract package at the bottom, the arms free of the harness, the verbs on top."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("protocol", "models", "upstream", "harness")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module ``name`` refers to: itself, else its nearest enclosing module (None: not ours)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> set[str]:
    """Project modules ``module`` imports anywhere in its source, at the top or inside functions."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {_resolve(a.name) for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found |= {_resolve(f"{node.module}.{a.name}") for a in node.names}
    return {m for m in found if m and m != module}


GRAPH = {m: imports_of(m) for m in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _top(module: str) -> str:
    return module.split(".")[0]


def test_the_graph_is_read_from_the_code():
    assert "harness.commands.run" in MODULES and "protocol.events" in MODULES
    assert "protocol.events" in GRAPH["models.train"]
    assert "harness.campaign" in GRAPH["harness.commands.run"]   # an import inside a function counts


def test_no_import_cycle_anywhere():
    assert cycles(GRAPH) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_contract_package_imports_nothing_of_the_project():
    bad = {m: sorted(i) for m, i in GRAPH.items() if _top(m) == "protocol" and {_top(x) for x in i} - {"protocol"}}
    assert bad == {}


def test_models_and_upstream_import_no_harness():
    bad = {m: sorted(x for x in i if _top(x) == "harness") for m, i in GRAPH.items() if _top(m) in ("models", "upstream")}
    assert {m: i for m, i in bad.items() if i} == {}


def test_models_do_not_import_upstream():
    bad = {m: sorted(x for x in i if _top(x) == "upstream") for m, i in GRAPH.items() if _top(m) == "models"}
    assert {m: i for m, i in bad.items() if i} == {}


def test_only_the_cli_imports_the_verbs():
    users = {m for m, i in GRAPH.items() if any(x.startswith("harness.commands") for x in i)}
    assert {m for m in users if not m.startswith("harness.commands")} == {"harness.cli"}


def test_domain_modules_do_not_use_argparse():
    """Only the verbs (harness/commands/), the CLI and the standalone entry points parse arguments: the arms' own
    and the GPU check's, which must start on a bare GPU machine before its pack is on the path."""
    entry_points = {"harness.cli", "models.train", "upstream.launch", "harness.gpucheck.__main__"}
    users = set()
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
        mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        if "argparse" in names | mods:
            users.add(module)
    assert {m for m in users if not m.startswith("harness.commands")} - entry_points == set()
