"""The import layering of docs/ARCHITECTURE.md, checked on the source (so the document stays true).

* Each top-level unit of ``ul_jax`` (a module or a subpackage) is in one layer (:data:`LAYER`)
  and may import only the units listed for it in :data:`ALLOWED`, all of them in lower layers;
  relative imports are resolved and count the same; the unit graph has no cycle.
* Each unit may import only the third-party packages listed for it in :data:`THIRD_PARTY` (the
  table's "third-party" column), lazy imports inside functions included.
* No unit imports ``launch`` or ``configs`` (config *files* are loaded by path through
  :func:`ul_jax.config.load_config_file`); ``launch/`` imports only the library, absl and its
  own helpers; ``configs/`` only ``ml_collections`` and its own helpers (configs are data).
"""

from __future__ import annotations

import ast
import collections
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOT = REPO / "ul_jax"

# unit -> layer (docs/ARCHITECTURE.md, "Layers"); an allowed import goes to a lower layer
LAYER: dict[str, int] = {
    "__init__": 0,
    "console": 0,
    "losses": 0,
    "prototypes": 0,
    "ufm": 0,
    "io": 0,
    "layers": 0,
    "objectives": 1,
    "models": 1,
    "metrics": 1,
    "data": 1,
    "ufm_figures": 1,
    "config": 2,
    "train": 3,
    "eval": 4,
    "bench": 4,
    "paper": 5,
}
# unit -> units it may import
ALLOWED: dict[str, set[str]] = {
    "__init__": set(),
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
    "ufm_figures": {"ufm", "prototypes", "losses"},
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
}
# unit -> third-party packages it may import (the standard library is always allowed)
_NUMERIC = {"jax", "numpy"}
THIRD_PARTY: dict[str, set[str]] = {
    "__init__": set(),
    "console": {"absl"},
    "io": set(),
    "losses": _NUMERIC | {"optax"},
    "prototypes": _NUMERIC | {"optax"},
    "ufm": _NUMERIC,
    "layers": {"jax", "flax"},
    "objectives": _NUMERIC | {"optax"},
    "models": _NUMERIC | {"flax"},
    "metrics": _NUMERIC | {"flax", "sklearn", "matplotlib"},
    "data": _NUMERIC
    | {"absl", "PIL", "sklearn", "grain", "tensorflow_datasets", "array_record", "tensorflow"},
    "ufm_figures": _NUMERIC | {"matplotlib"},
    "config": {"absl", "ml_collections"},
    "train": _NUMERIC
    | {"absl", "flax", "optax", "orbax", "ml_collections", "tensorboardX", "tqdm", "matplotlib"},
    "eval": _NUMERIC | {"ml_collections"},
    "bench": _NUMERIC | {"torch"},
    "paper": {"numpy", "scipy", "matplotlib", "submitit"},
}
STDLIB = set(sys.stdlib_module_names) | {"__future__"}


def _unit(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    return rel.parts[0] if rel.parts[0] != "__init__" else "__init__"


def _module(path: Path, root: Path) -> list[str]:
    """The package path of ``path`` (``ul_jax/paper/runner.py`` → ``["ul_jax", "paper"]``)."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return parts if path.name == "__init__.py" else parts[:-1]


def _imports(path: Path, root: Path = ROOT) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = _module(path, root)
                base = pkg[: len(pkg) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if node.module is None or mod in ("ul_jax", "launch", "configs"):
                out |= {f"{mod}.{a.name}" for a in node.names}
            else:
                out.add(mod)
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


def _third_party(files) -> dict[str, set[str]]:
    out: dict[str, set[str]] = collections.defaultdict(set)
    for f, key in files:
        for name in _imports(f, f.parents[len(f.relative_to(REPO).parts) - 2]):
            top = name.split(".")[0]
            if top not in STDLIB and top not in ("ul_jax", "launch", "configs"):
                out[key].add(top)
    return out


def test_every_unit_is_in_the_layer_table():
    assert set(_graph()) <= set(ALLOWED) == set(LAYER) == set(THIRD_PARTY), set(_graph()) - set(
        ALLOWED
    )


def test_allowed_imports_go_to_lower_layers():
    for u, allowed in ALLOWED.items():
        up = {v for v in allowed if LAYER[v] >= LAYER[u]}
        assert not up, f"ALLOWED lets ul_jax.{u} (layer {LAYER[u]}) import {sorted(up)}"


@pytest.mark.parametrize("unit", sorted(ALLOWED))
def test_unit_imports_only_lower_layers(unit):
    bad = _graph().get(unit, set()) - ALLOWED[unit]
    assert not bad, f"ul_jax.{unit} imports {sorted(bad)} (docs/ARCHITECTURE.md forbids it)"


def test_units_import_only_their_third_party_packages():
    used = _third_party((f, _unit(f)) for f in ROOT.rglob("*.py"))
    bad = {u: sorted(p - THIRD_PARTY[u]) for u, p in used.items() if p - THIRD_PARTY[u]}
    assert not bad, f"third-party imports docs/ARCHITECTURE.md does not list: {bad}"


def test_launch_and_configs_rows():
    launch = _third_party((f, "launch") for f in (REPO / "launch").rglob("*.py"))["launch"]
    assert launch <= {"absl"}, launch
    configs = _third_party((f, "configs") for f in (REPO / "configs").rglob("*.py"))["configs"]
    assert configs <= {"ml_collections"}, configs
    for f in (REPO / "configs").rglob("*.py"):
        lib = {n for n in _imports(f, REPO / "configs") if n.split(".")[0] in ("ul_jax", "launch")}
        assert not lib, f"{f.relative_to(REPO)} imports {sorted(lib)}: configs are data"


def test_relative_imports_are_resolved(tmp_path):
    pkg = tmp_path / "ul_jax" / "paper"
    pkg.mkdir(parents=True)
    f = pkg / "x.py"
    f.write_text("from ..train import loop\nfrom . import results\nfrom .suites import Run\n")
    assert _imports(f, tmp_path / "ul_jax") == {
        "ul_jax.train",
        "ul_jax.paper.results",
        "ul_jax.paper.suites",
    }


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


def test_private_names_stay_in_their_module():
    """A helper named with a leading underscore is private to its module: no module imports one
    from another (shared helpers get public names). Package-private *modules* (``_cache``,
    ``_checks``) may be imported, but only inside their own package."""
    leaks = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        package = ".".join(rel.parts[:-1] if rel.name != "__init__" else rel.parts[:-1])
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
                continue
            if not node.module.startswith("ul_jax"):
                continue
            for alias in node.names:
                name = alias.name
                if not name.startswith("_") or name.startswith("__"):
                    continue
                private_module = (REPO / node.module.replace(".", "/") / f"{name}.py").is_file()
                if private_module and (package + ".").startswith(node.module + "."):
                    continue  # a package-private module, imported inside its package
                leaks.append(f"{rel}: from {node.module} import {name}")
    assert not leaks, "private names imported across modules:\n" + "\n".join(leaks)
