"""odstack's modules form no import cycle, and each imports on its own, cheaply.

The rule (what a reviewer can hold a change to):

- Every ``import``/``from ... import`` of an odstack module counts, wherever it stands: at module level
  *and* inside a function. A function-local import is fine for a heavy third-party module (TensorFlow,
  the OD API, Model Garden, PIL) to keep module import cheap, but never to hide a cycle between odstack
  modules: the graph of all of them must be acyclic.
- An edge goes to the module named (``from odstack.export import publish`` -> ``odstack.export.publish``
  when that is a module, else ``odstack.export``). The parent packages Python imports on the way are not
  edges: a package's ``__init__`` listing its own submodules (a static registry, e.g.
  ``odstack.export.runtimes``) is the one place a package imports downward into itself.
- ``importlib.import_module`` of a name from a static tuple (``ENGINE_NAMES``, ``FORMAT_NAMES``) is how the
  engine and format registries load their modules lazily; it is not an edge, since the loaded module is
  a leaf that never imports its registry's users.

And each module imports in a fresh interpreter (``python -c "import odstack.x"``) without importing
TensorFlow; modules whose third-party dependencies live in another venv (the labelling backend, the
development model server) may fail here only for that missing dependency.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "odstack"


def _modules() -> dict[str, Path]:
    """odstack module name -> file."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The odstack modules ``name`` imports anywhere in its file (resolved as the module docstring says)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x / from ..a import b
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                targets.add(submodule if submodule in MODULES else base)
    return {t for t in targets if t in MODULES and t != name}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_odstack_import_graph_is_acyclic():
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    assert sum(map(len, graph.values())) > 100, "the import graph looks empty: is the resolution broken?"
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


_PROBE = "import sys; import {name}; print('tensorflow' in sys.modules)"
# third-party modules of other venvs: .venv/labelling (Flask, SQLAlchemy), .venv/modelserver (TF Serving's API)
_OTHER_VENVS = ("flask", "sqlalchemy", "tensorflow_serving", "grpc", "psycopg", "label_studio_sdk")


def _import_alone(name: str) -> tuple[str, subprocess.CompletedProcess]:
    return name, subprocess.run([sys.executable, "-c", _PROBE.format(name=name)], cwd=ROOT, capture_output=True,
                                text=True, timeout=120)


@pytest.mark.parametrize("chunk", [0, 1])
def test_every_module_imports_alone_without_tensorflow(chunk):
    names = [n for n in MODULES if not n.endswith("__main__")][chunk::2]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(_import_alone, names))
    problems = []
    for name, done in results:
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or [""])[-1]
            if not (last.startswith("ModuleNotFoundError") and any(f"'{m}" in last for m in _OTHER_VENVS)):
                problems.append(f"{name}: {last}")
        elif done.stdout.strip() != "False":
            problems.append(f"{name}: imports TensorFlow at import time")
    assert not problems, "\n".join(problems)
