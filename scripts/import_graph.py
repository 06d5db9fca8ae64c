"""Import graph of the project's packages: cycles and sub-package edges (AST scan, no imports run).

    python scripts/import_graph.py [--root DIR] [--include-type-checking] [--depth N]

Scans every ``.py`` file of ``fusionsam_model``, ``fusionsam_ros`` and ``training`` with
``ast`` (nothing is imported), builds the module graph, prints the import cycles and the
edges between sub-packages, and exits 1 when there is a cycle (0 otherwise, 2 on a usage
error). ``test/test_import_graph.py`` runs it and wants 0 cycles.

Rules:

- A module is a ``.py`` file; ``pkg/__init__.py`` is the module ``pkg``.
- Every ``import X`` / ``from X import Y`` statement that names a project module is an
  edge, wherever it stands: at module level (``module`` edges: they run on import, also
  inside a top-level ``if`` / ``try`` / class body) and inside a function (``function``
  edges: they run when the function is called, but they are still a dependency, so they
  count). Relative imports are resolved against the importing module's package.
- ``from P import N`` is an edge to the module ``P.N`` when that file exists, otherwise
  to ``P`` (N is a name defined in P). ``import a.b.c`` is an edge to the deepest project
  module in the dotted name.
- Parent packages that Python initialises on the way (``a`` and ``a.b`` for ``import
  a.b.c``) are not edges: a package's ``__init__`` running first is not a dependency of
  the importing module on it (import-linter and pydeps count the same way).
- Imports under ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``) never execute: they
  are listed as ``type-only`` edges and left out of the cycles, unless
  ``--include-type-checking`` is given.
- Dynamic imports (``importlib.import_module``, ``__import__``) are not seen.

A cycle is a strongly connected component of more than one module, or a module that
imports itself. Sub-package edges group modules by the package that holds them, cut to
its first ``--depth`` name parts (default 2: ``fusionsam_model.modeling``,
``fusionsam_model.runtime`` with its ``backends``; ``fusionsam_ros.node`` /
``.bags`` / ``.evaluation`` / ``.tools`` and ``fusionsam_ros`` itself for the shared
modules at its top level; ``training``, flat, is one group); each line counts the module -> module edges from one
group into another, by kind (module-level / in functions / type-only; a module importing
another at several places is one edge per kind). Cycles between groups are printed for
information (layering) and do not change the exit status.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ("fusionsam_model", "fusionsam_ros", "training")
ROOT = Path(__file__).resolve().parents[1]
KINDS = ("module", "function", "type-only")


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: str  # one of KINDS
    line: int


@dataclass
class ImportGraph:
    modules: dict[str, Path]  # module name -> file
    edges: list[Edge]
    include_type_checking: bool = False
    cycles: list[list[str]] = field(default_factory=list)

    def counted(self) -> list[Edge]:
        """The edges that make cycles (type-only ones only with include_type_checking)."""
        return [e for e in self.edges if self.include_type_checking or e.kind != "type-only"]

    def cycle_edges(self, cycle: list[str]) -> list[Edge]:
        members = set(cycle)
        return [e for e in self.counted() if e.source in members and e.target in members]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def find_modules(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            if "__pycache__" not in path.parts:
                modules[module_name(path, root)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _imports(tree: ast.Module):
    """(node, kind) for every Import / ImportFrom in the file, with where it stands."""

    def visit(node: ast.AST, in_function: bool, type_only: bool):
        if isinstance(node, ast.Import | ast.ImportFrom):
            kind = "type-only" if type_only else "function" if in_function else "module"
            yield node, kind
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                yield from visit(child, in_function, True)
            for child in node.orelse:
                yield from visit(child, in_function, type_only)
            return
        inner = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            yield from visit(child, inner, type_only)

    yield from visit(tree, False, False)


def _resolve_base(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute dotted name a (possibly relative) ``from ... import`` refers to."""
    if level == 0:
        return name or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    if level - 1 > len(package):
        raise ValueError(f"relative import beyond the top package in {module}")
    base = package[: len(package) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _deepest_module(dotted: str, modules: dict[str, Path]) -> str | None:
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in modules:
            return candidate
    return None


def targets(
    node: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules: dict[str, Path]
) -> list[str]:
    """The project modules one import statement depends on."""
    found: list[str] = []
    if isinstance(node, ast.Import):
        for alias in node.names:
            target = _deepest_module(alias.name, modules)
            if target:
                found.append(target)
        return found
    base = _resolve_base(module, is_package, node.level, node.module)
    for alias in node.names:
        sub = f"{base}.{alias.name}" if base else alias.name
        target = sub if sub in modules else _deepest_module(base, modules) if base else None
        if target and target not in found:
            found.append(target)
    return found


def strongly_connected(nodes: list[str], adjacency: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative); components in discovery order, members sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(adjacency.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(adjacency.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def find_cycles(nodes: list[str], edges: list[Edge]) -> list[list[str]]:
    adjacency: dict[str, set[str]] = defaultdict(set)
    for e in edges:
        adjacency[e.source].add(e.target)
    return [
        c
        for c in strongly_connected(nodes, adjacency)
        if len(c) > 1 or c[0] in adjacency.get(c[0], ())
    ]


def scan(
    root: Path = ROOT,
    packages: tuple[str, ...] = PACKAGES,
    include_type_checking: bool = False,
) -> ImportGraph:
    """Parse every module of ``packages`` under ``root`` and find the import cycles."""
    modules = find_modules(root, packages)
    edges: list[Edge] = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        seen: set[tuple[str, str]] = set()
        for node, kind in _imports(tree):
            for target in targets(node, name, is_package, modules):
                if (target, kind) not in seen:  # one edge per target and kind, first line
                    seen.add((target, kind))
                    edges.append(Edge(name, target, kind, node.lineno))
    graph = ImportGraph(modules, edges, include_type_checking)
    graph.cycles = find_cycles(sorted(modules), graph.counted())
    return graph


def group_of(module: str, modules: dict[str, Path], depth: int = 2) -> str:
    """The sub-package a module belongs to: the package that holds it (the module itself for
    an ``__init__``), cut to its first ``depth`` name parts."""
    package = module if modules[module].name == "__init__.py" else module.rpartition(".")[0]
    return ".".join(package.split(".")[:depth])


def subpackage_edges(graph: ImportGraph, depth: int = 2) -> dict[tuple[str, str], Counter]:
    """(source group, target group) -> Counter of edge kinds, for groups that differ."""
    result: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for e in graph.edges:
        a = group_of(e.source, graph.modules, depth)
        b = group_of(e.target, graph.modules, depth)
        if a != b:
            result[(a, b)][e.kind] += 1
    return dict(sorted(result.items()))


def report(graph: ImportGraph, root: Path = ROOT, depth: int = 2) -> str:
    kinds = Counter(e.kind for e in graph.edges)
    lines = [
        f"import graph: {len(graph.modules)} modules, {len(graph.edges)} edges "
        f"({kinds['module']} module-level, {kinds['function']} in functions, "
        f"{kinds['type-only']} type-only"
        + (", counted)" if graph.include_type_checking else ", not counted in cycles)"),
        f"cycles: {len(graph.cycles)}",
    ]
    for i, cycle in enumerate(graph.cycles, 1):
        lines.append(f"  cycle {i}: {' , '.join(cycle)}")
        for e in sorted(graph.cycle_edges(cycle), key=lambda e: (e.source, e.target)):
            where = graph.modules[e.source].relative_to(root)
            lines.append(f"    {e.source} -> {e.target}  [{e.kind}, {where}:{e.line}]")
    edges = subpackage_edges(graph, depth)
    lines.append(
        f"sub-package edges ({len(edges)}; module -> module edges: module-level / in functions / type-only):"
    )
    for (a, b), count in edges.items():
        lines.append(
            f"  {a} -> {b}: {count['module']} / {count['function']} / {count['type-only']}"
        )
    groups = sorted({g for pair in edges for g in pair})
    group_cycles = find_cycles(
        groups,
        [
            Edge(a, b, "module", 0)
            for (a, b), c in edges.items()
            if graph.include_type_checking or c["module"] + c["function"]
        ],
    )
    lines.append(f"sub-package cycles (information, not an error): {len(group_cycles)}")
    lines += [f"  {' , '.join(c)}" for c in group_cycles]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root")
    parser.add_argument(
        "--include-type-checking",
        action="store_true",
        help="count imports under `if TYPE_CHECKING:` in the cycles too",
    )
    parser.add_argument("--depth", type=int, default=2, help="name parts of a sub-package")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    missing = [p for p in PACKAGES if not (root / p).is_dir()]
    if missing:
        print(f"error: {root} has no {', '.join(missing)}", file=sys.stderr)
        return 2
    graph = scan(root, include_type_checking=args.include_type_checking)
    print(report(graph, root, args.depth))
    return 1 if graph.cycles else 0


if __name__ == "__main__":
    raise SystemExit(main())
