"""The package's layers: every import points down, and no two modules import each other, even indirectly.

Every ``import`` counts, function-level ones included, and so do lazy references written as strings
(``"clip_bench.models.backends.open_clip_backend:OpenClipBackend"``). Importing ``a.b.c`` also runs the
``__init__`` of ``a.b``: that is an edge too, unless the importer lives inside ``a.b``.
"""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "clip_bench"

#: Bottom to top. A module may import from its own layer and the layers below; within a layer the
#: subpackages are listed in the order they may import each other.
LAYERS: list[tuple[str, ...]] = [
    ("util", "assets"),
    ("config",),
    ("metrics",),
    ("probe",),
    ("tasks",),
    ("loaders",),
    ("models",),
    ("cache",),
    ("results",),
    ("protocols",),
    ("report",),
    ("cli",),
]
#: The package's own ``__init__`` (the lazy public API) and ``__main__`` sit above every layer.
TOP = {PACKAGE, f"{PACKAGE}.__main__"}
_LAZY_STRING = re.compile(rf"^{PACKAGE}(\.\w+)+(:\w+)?$")


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(root: Path) -> dict[str, Path]:
    return {_module_name(p, root): p for p in sorted((root / PACKAGE).rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of a dotted name that is one of our modules."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        candidate = ".".join(parts[:i])
        if candidate in modules:
            return candidate
    return None


def _targets(node: ast.AST, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            origin = ".".join(base + ([node.module] if node.module else []))
        else:
            origin = node.module or ""
        return [origin] + [f"{origin}.{a.name}" for a in node.names]
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and _LAZY_STRING.match(node.value):
        return [node.value.partition(":")[0]]
    return []


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules it imports (our own only), with the packages whose ``__init__`` that runs."""
    modules = _modules(root)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            for target in _targets(node, name, path.name == "__init__.py"):
                if target != PACKAGE and not target.startswith(PACKAGE + "."):
                    continue
                resolved = _resolve(target, modules)
                if resolved is None:
                    continue
                parts = resolved.split(".")
                for i in range(1, len(parts) + 1):
                    step = ".".join(parts[:i])
                    inside = name == step or name.startswith(step + ".")
                    if step in modules and step != name and (not inside or i == len(parts)):
                        edges.add(step)
        graph[name] = edges
    return graph


def layer_of(module: str) -> int | None:
    """The index of a module's layer in :data:`LAYERS`; ``len(LAYERS)`` for the top; None if it has none."""
    if module in TOP:
        return len(LAYERS)
    sub = module.split(".")[1] if "." in module else ""
    for rank, names in enumerate(LAYERS):
        if sub in names:
            return rank
    return None


def layering_problems(graph: dict[str, set[str]]) -> list[str]:
    """Modules outside every layer, imports that point up, and import cycles."""
    problems = [f"{m} is in no layer (put it in one of {', '.join(n for g in LAYERS for n in g)})"
                for m in sorted(graph) if layer_of(m) is None]
    for m in sorted(graph):
        rank = layer_of(m)
        for t in sorted(graph[m]):
            target_rank = layer_of(t)
            if rank is not None and target_rank is not None and target_rank > rank:
                problems.append(f"{m} imports {t}, which is in a higher layer")
    problems += [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_import_points_down_and_none_cycles():
    problems = layering_problems(import_graph(ROOT))
    assert not problems, "\n".join(problems)


def _write_tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / PACKAGE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


BASE = {
    "__init__.py": "",
    "util/__init__.py": "",
    "util/errors.py": "class ClipBenchError(Exception): ...\n",
    "results/__init__.py": "",
    "results/rows.py": "from clip_bench.util.errors import ClipBenchError\n",
    "report/__init__.py": "",
    "report/tables.py": "from clip_bench.results.rows import ClipBenchError\n",
}


def test_a_clean_tree_has_no_problem(tmp_path):
    _write_tree(tmp_path, BASE)
    assert layering_problems(import_graph(tmp_path)) == []


@pytest.mark.parametrize(("rel", "text", "expected"), [
    ("util/io.py", "def f():\n    from clip_bench.results import rows\n",
     "clip_bench.util.io imports clip_bench.results.rows, which is in a higher layer"),
    ("results/rows.py", "from ..report.tables import x\n",
     "clip_bench.results.rows imports clip_bench.report.tables, which is in a higher layer"),
    ("util/registry.py", "LAZY = {'x': 'clip_bench.report.tables:Table'}\n",
     "clip_bench.util.registry imports clip_bench.report.tables, which is in a higher layer"),
    ("results/rows.py", "import clip_bench\n",
     "clip_bench.results.rows imports clip_bench, which is in a higher layer"),
    ("results/tables.py", "from clip_bench.results.leaderboard import x\n",
     "import cycle: clip_bench.results.leaderboard -> clip_bench.results.tables"),
    ("stats.py", "", "clip_bench.stats is in no layer"),
])
def test_an_upward_import_a_cycle_or_a_stray_module_is_found(tmp_path, rel, text, expected):
    files = dict(BASE)
    files[rel] = text
    if rel == "results/tables.py":
        files["results/leaderboard.py"] = "def g():\n    import clip_bench.results.tables\n"
    _write_tree(tmp_path, files)
    problems = layering_problems(import_graph(tmp_path))
    assert any(p.startswith(expected) for p in problems), problems
