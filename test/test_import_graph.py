"""No import cycles in fusionsam_model, fusionsam_ros, training (scripts/import_graph.py)."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _import_graph():
    """scripts/import_graph.py as a module (scripts/ is not a package)."""
    if "import_graph" not in sys.modules:  # dataclasses look their module up there
        spec = importlib.util.spec_from_file_location(
            "import_graph", ROOT / "scripts" / "import_graph.py"
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["import_graph"] = module
        spec.loader.exec_module(module)
    return sys.modules["import_graph"]


def test_the_project_has_no_import_cycles(capsys):
    code = _import_graph().main([])
    out = capsys.readouterr().out
    assert "cycles: 0" in out, out
    assert code == 0
    # the model layer loads SAM / SAM2 weights itself: it does not reach up into runtime
    assert "fusionsam_model.modeling -> fusionsam_model.runtime" not in out


def test_the_model_package_never_imports_the_ros_package():
    """fusionsam_model must work without ROS 2: no import of fusionsam_ros anywhere in it,
    at module level, inside a function or under TYPE_CHECKING."""
    graph = _import_graph().scan(ROOT)
    upward = [
        f"{e.source} -> {e.target} [{e.kind}, line {e.line}]"
        for e in graph.edges
        if e.source.split(".")[0] == "fusionsam_model" and e.target.split(".")[0] == "fusionsam_ros"
    ]
    assert not upward, upward


# fusionsam_ros's rooms and whom each may import (besides fusionsam_model and the shared
# modules at fusionsam_ros's top level, which import no room): docs/architecture.md
ROS_LAYERS = {
    "fusionsam_ros.node": set(),
    "fusionsam_ros.bags": {"fusionsam_ros.node"},
    "fusionsam_ros.evaluation": {"fusionsam_ros.node"},
    "fusionsam_ros.tools": {"fusionsam_ros.node", "fusionsam_ros.bags", "fusionsam_ros.evaluation"},
}


def test_fusionsam_ros_rooms_import_only_downwards():
    ig = _import_graph()
    graph = ig.scan(ROOT)
    top = sorted(p.name for p in (ROOT / "fusionsam_ros").glob("*.py"))
    assert len(top) <= 8, top  # the shared plumbing; the rest lives in the rooms
    rooms = {p.name for p in (ROOT / "fusionsam_ros").iterdir() if (p / "__init__.py").is_file()}
    assert {f"fusionsam_ros.{r}" for r in rooms} == set(ROS_LAYERS)
    wrong = []
    for (a, b), _ in ig.subpackage_edges(graph).items():
        if not b.startswith("fusionsam_ros.") or a == b:
            continue  # into fusionsam_model or the shared top-level modules
        if a == "fusionsam_ros" or b not in ROS_LAYERS.get(a, set()):
            wrong.append(f"{a} -> {b}")
    assert not wrong, wrong


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_the_scan_finds_function_level_relative_and_type_only_cycles(tmp_path):
    ig = _import_graph()
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/sub/__init__.py": "",
            "pkg/sub/a.py": "from ..b import thing\n",  # relative, module level
            "pkg/b.py": "def f():\n    from pkg.sub import a\n",  # function level
            "pkg/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.d\n",
            "pkg/d.py": "import pkg.c\n",
            "pkg/e.py": "from pkg import e\n",  # self loop
        },
    )
    graph = ig.scan(tmp_path, packages=("pkg",))
    assert graph.cycles == [["pkg.b", "pkg.sub.a"], ["pkg.e"]]
    kinds = {(e.source, e.target): e.kind for e in graph.edges}
    assert kinds[("pkg.sub.a", "pkg.b")] == "module"
    assert kinds[("pkg.b", "pkg.sub.a")] == "function"
    assert kinds[("pkg.c", "pkg.d")] == "type-only"
    with_types = ig.scan(tmp_path, packages=("pkg",), include_type_checking=True)
    assert ["pkg.c", "pkg.d"] in with_types.cycles
    edges = ig.subpackage_edges(graph)
    assert edges[("pkg.sub", "pkg")]["module"] == 1
    assert edges[("pkg", "pkg.sub")]["function"] == 1
