"""The import layers hold: `lint-imports` passes (pyproject.toml's contracts), and no module circles back
to one that imports it, not even a package through its own `__init__`."""

from __future__ import annotations

import pkgutil
import re
import subprocess
import sys
import tomllib

import grimp

import unlearn
from tests.conftest import ROOT

CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def test_the_import_contracts_hold() -> None:
    # through the interpreter running the tests: the same environment, wherever its scripts lie
    run = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()",
                          "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_module_of_the_library_has_a_layer() -> None:
    """A module the layers contract does not name is not checked at all: a new one must be placed."""
    layers = next(c["layers"] for c in CONFIG["contracts"] if c["type"] == "layers")
    placed = {name for layer in layers for name in re.split(r"\s*[|:]\s*", layer.strip())}
    modules = {f"unlearn.{m.name}" for m in pkgutil.iter_modules(unlearn.__path__)}
    assert modules - placed == set(), "modules without a layer in pyproject.toml"


def import_cycle(graph: grimp.ImportGraph) -> list[str] | None:
    """One circle of direct imports among the graph's modules, first module repeated last; None if none."""
    imports = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    state: dict[str, int] = {}  # 1: on the current path, 2: finished (no circle through it)
    for start in sorted(imports):
        if state.get(start):
            continue
        path, todo = [start], [iter(imports[start])]
        state[start] = 1
        while todo:
            nxt = next(todo[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                todo.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                todo.append(iter(imports[nxt]))
    return None


def test_no_module_imports_itself_through_others(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))  # benchmarks is not installed
    cycle = import_cycle(grimp.build_graph(*CONFIG["root_packages"]))
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_a_circle_is_found_and_named() -> None:
    graph = grimp.ImportGraph()
    for a, b in [("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.a", "p.d")]:
        graph.add_import(importer=a, imported=b)
    assert import_cycle(graph) == ["p.a", "p.b", "p.c", "p.a"]
    graph.remove_import(importer="p.c", imported="p.a")
    assert import_cycle(graph) is None
