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
