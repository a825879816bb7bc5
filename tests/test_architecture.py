"""The import layering of docs/ARCHITECTURE.md, checked on the source (so the document stays true).

Each top-level unit of ``ul_jax`` (a module or a subpackage) may import only the units listed for
it in :data:`ALLOWED`; no unit imports ``launch`` or ``configs`` (config *files* are loaded by path
through :func:`ul_jax.config.load_config_file`, never imported as modules by the library); the
unit graph has no cycle.
"""

from __future__ import annotations

import ast
import collections
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "ul_jax"

# unit -> units it may import (the layers of docs/ARCHITECTURE.md, lowest first)
PURE = {"losses", "prototypes", "ufm", "io", "layers", "console"}
ALLOWED: dict[str, set[str]] = {
    "console": set(),
    "losses": set(),
    "prototypes": set(),
    "ufm": set(),
    "io": set(),
    "layers": set(),
    "objectives": {"losses", "prototypes"},
    "models": {"prototypes", "layers"},
    "metrics": {"losses"},
    "data": {"losses", "io"},
    "config": {"data", "models", "objectives", "io", "layers"},
    "train": {
        "config",
        "console",
        "data",
        "io",
        "models",
        "objectives",
        "losses",
        "prototypes",
        "metrics",
    },
    "eval": {
        "train",
        "config",
        "console",
        "data",
        "io",
        "metrics",
        "models",
        "objectives",
        "losses",
    },
    "bench": {
        "console",
        "io",
        "train",
        "config",
        "data",
        "models",
        "objectives",
        "ufm",
        "ufm_figures",
        "losses",
        "prototypes",
    },
    "ufm_figures": {"ufm", "prototypes", "losses"},
    "paper": {
        "console",
        "train",
        "eval",
        "config",
        "data",
        "io",
        "metrics",
        "objectives",
        "models",
        "losses",
        "prototypes",
    },
    "__init__": set(),
}


def _unit(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    return rel.parts[0] if rel.parts[0] != "__init__" else "__init__"


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "ul_jax":
                out |= {f"ul_jax.{a.name}" for a in node.names}
            else:
                out.add(node.module)
    return out


def _graph() -> dict[str, set[str]]:
    g: dict[str, set[str]] = collections.defaultdict(set)
    for f in ROOT.rglob("*.py"):
        u = _unit(f)
        g[u]
        for name in _imports(f):
            top = name.split(".")[0]
            if top in ("launch", "configs"):
                g[u].add(top)
            elif top == "ul_jax" and "." in name:
                v = name.split(".")[1]
                if v != u:
                    g[u].add(v)
    return g


def test_every_unit_is_in_the_layer_table():
    assert set(_graph()) <= set(ALLOWED), set(_graph()) - set(ALLOWED)


@pytest.mark.parametrize("unit", sorted(ALLOWED))
def test_unit_imports_only_lower_layers(unit):
    bad = _graph().get(unit, set()) - ALLOWED[unit]
    assert not bad, f"ul_jax.{unit} imports {sorted(bad)} (docs/ARCHITECTURE.md forbids it)"


def test_import_graph_has_no_cycle():
    g = _graph()
    state: dict[str, int] = {}

    def visit(u, stack):
        state[u] = 1
        for v in g.get(u, ()):
            if state.get(v) == 1:
                raise AssertionError(f"import cycle: {' -> '.join([*stack, u, v])}")
            if v not in state:
                visit(v, [*stack, u])
        state[u] = 2

    for u in list(g):
        if u not in state:
            visit(u, [])
