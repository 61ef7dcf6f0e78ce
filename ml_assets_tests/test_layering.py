"""Package layering, checked on the source: the logic is a layer below the Dagster wiring,
and the logic packages import each other only along the data flow.

Every ``import`` and ``from … import`` of every module under ``ml_assets/`` counts, also
those inside functions and under ``if TYPE_CHECKING:``: a deferred import still couples
the two modules, it only hides the coupling from the import system.

The rules:

1. **Wiring** is what assembles Dagster definitions: ``definitions.py``, ``cli.py``,
   ``replay.py``, ``orchestration.py``, ``dev.py``, ``asset_checks.py``, everything under
   ``resources/``, and every group's ``assets.py``, ``sensors.py`` and ``checks.py``. Every
   other module is **logic** and never imports a wiring module. Logic may import the
   ``dagster`` library where its job is a Dagster value (``metadata.py`` builds metadata
   values, ``partitions.py`` the partitions definition, ``instance.py`` the run launcher):
   the rule is about the project's own wiring. Wiring may import anything.
2. Logic modules form **units**: a package (``registry``) or a top-level module
   (``storage``). ``LOGIC_LAYERS`` orders them along the data flow, contract → storage →
   ingestion → features → datasets → training → registry → monitoring, with the helpers
   that import no other unit at the bottom. A logic module imports only its own unit and
   the units of lower layers (not a neighbour in its own layer), so the graph of units is
   acyclic. A new unit must be placed in ``LOGIC_LAYERS``.
3. No two modules of the package import each other, directly or around a longer cycle,
   wiring included.
4. A group's wiring (``<unit>/assets.py``, ``sensors.py``, ``checks.py``) imports nothing of a
   unit above its own: the datasets assets do not reach into the registry. The top-level
   wiring and ``resources/`` serve every group and may import any unit. The exceptions that
   exist today are listed, with the reason, in ``KNOWN_GROUP_WIRING_EXCEPTIONS``; the test
   fails when one of them is gone, so the list only shrinks.

When a rule breaks, move the function or class to the unit where it belongs (or to a small
shared module in a lower layer) and update its importers; do not hide the import inside a
function.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "ml_assets"
PACKAGE_DIR = Path(__file__).resolve().parent.parent / PACKAGE

WIRING_MODULES = {"definitions", "cli", "replay", "orchestration", "dev", "asset_checks"}
WIRING_PACKAGES = {"resources"}
WIRING_FILES = {"assets", "sensors", "checks"}

# Lowest layer first. "__init__" is the root package (only a docstring; imported for its path).
LOGIC_LAYERS: tuple[tuple[str, ...], ...] = (
    ("__init__", "settings", "retry", "console", "alerts", "metadata", "metrics"),
    ("links", "instance"),
    ("contract",),
    ("lake_layout",),
    ("partitions", "storage"),
    ("simulate",),
    ("ingestion",),
    ("features",),
    ("datasets",),
    ("training",),
    ("registry",),
    ("monitoring",),
    ("serve",),
)

# (importer, imported) -> why it is still there. Remove an entry when its import goes.
KNOWN_GROUP_WIRING_EXCEPTIONS: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module names
    imported: str
    line: int

    def __str__(self) -> str:
        return f"{self.importer} imports {self.imported} (line {self.line})"


def find_modules(package_dir: Path, package: str = PACKAGE) -> dict[str, Path]:
    found = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = [package, *path.relative_to(package_dir).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def find_imports(package_dir: Path, package: str = PACKAGE) -> list[Import]:
    """Every import of a module of the package by a module of the package."""
    modules = find_modules(package_dir, package)

    def known(name: str) -> str | None:
        while name not in modules and "." in name:
            name = name.rsplit(".", 1)[0]
        return name if name in modules else None

    found = []
    for module, path in modules.items():
        here = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                # `from pkg import sub` imports the submodule; `from mod import name` the module.
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for name in names:
                if name == package or name.startswith(package + "."):
                    target = known(name)
                    if target and target != module:
                        found.append(Import(module, target, node.lineno))
    return sorted(set(found), key=lambda i: (i.importer, i.imported, i.line))


def is_wiring(module: str) -> bool:
    parts = module.split(".")[1:]
    return bool(parts) and (
        (len(parts) == 1 and parts[0] in WIRING_MODULES)
        or parts[0] in WIRING_PACKAGES
        or (len(parts) > 1 and parts[-1] in WIRING_FILES)
    )


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def wiring_violations(imports: list[Import]) -> list[str]:
    return [f"{i}: logic module {i.importer} must not import the wiring module {i.imported}"
            for i in imports if not is_wiring(i.importer) and is_wiring(i.imported)]


def order_violations(imports: list[Import], modules: list[str],
                     layers: tuple[tuple[str, ...], ...] = LOGIC_LAYERS) -> list[str]:
    layer_of = {u: n for n, names in enumerate(layers) for u in names}
    problems = [f"logic unit {u!r} ({m}) is not placed in LOGIC_LAYERS"
                for m in modules if not is_wiring(m) and (u := unit(m)) not in layer_of]
    for i in imports:
        if is_wiring(i.importer) or is_wiring(i.imported):
            continue
        a, b = unit(i.importer), unit(i.imported)
        if a == b or a not in layer_of or b not in layer_of:
            continue
        if layer_of[b] >= layer_of[a]:
            where = "a higher layer" if layer_of[b] > layer_of[a] else "its own layer"
            problems.append(f"{i}: {a!r} may import only lower layers, and {b!r} is in {where}")
    return list(dict.fromkeys(problems))


def group_wiring_violations(imports: list[Import],
                            layers: tuple[tuple[str, ...], ...] = LOGIC_LAYERS) -> list[str]:
    layer_of = {u: n for n, names in enumerate(layers) for u in names}
    problems = []
    for i in imports:
        a, b = unit(i.importer), unit(i.imported)
        group_wiring = len(i.importer.split(".")) > 2 and is_wiring(i.importer) and a in layer_of
        if group_wiring and a != b and b in layer_of and layer_of[b] >= layer_of[a]:
            problems.append(f"{i}: the {a!r} group's wiring must not import {b!r}, a unit above (or beside) {a!r}")
    return problems


def cycles(edges: dict[str, dict[str, Import]]) -> list[list[Import]]:
    """One cycle (as the imports that close it) per strongly connected group of nodes."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(v: str) -> None:  # Tarjan; the graphs here are small
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    found = []
    for group in groups:
        start = min(group)
        paths = {start: []}  # breadth first inside the group: the shortest way back to start
        queue = [start]
        while queue:
            v = queue.pop(0)
            for w, imp in sorted(edges.get(v, {}).items()):
                if w == start:
                    found.append([*paths[v], imp])
                    queue = []
                    break
                if w in group and w not in paths:
                    paths[w] = [*paths[v], imp]
                    queue.append(w)
    return found


def module_cycles(imports: list[Import]) -> list[str]:
    edges: dict[str, dict[str, Import]] = {}
    for i in imports:
        edges.setdefault(i.importer, {}).setdefault(i.imported, i)
    return ["import cycle: " + " -> ".join(map(str, c)) for c in cycles(edges)]


def unit_cycles(imports: list[Import]) -> list[str]:
    edges: dict[str, dict[str, Import]] = {}
    for i in imports:
        if not (is_wiring(i.importer) or is_wiring(i.imported)) and unit(i.importer) != unit(i.imported):
            edges.setdefault(unit(i.importer), {}).setdefault(unit(i.imported), i)
    return ["logic units import each other: " + " -> ".join(map(str, c)) for c in cycles(edges)]


IMPORTS = find_imports(PACKAGE_DIR)


def test_the_scan_sees_the_package() -> None:
    """Guards the other tests against passing on an empty or misread graph."""
    modules = find_modules(PACKAGE_DIR)
    assert {"ml_assets.definitions", "ml_assets.registry.promotion", "ml_assets.resources.storage"} <= set(modules)
    assert Import("ml_assets.definitions", "ml_assets.resources", 0) not in IMPORTS  # lines are real
    assert any(i.importer == "ml_assets.definitions" and i.imported == "ml_assets.resources" for i in IMPORTS)
    assert is_wiring("ml_assets.monitoring.sensors") and is_wiring("ml_assets.resources.feast")
    assert not is_wiring("ml_assets.monitoring.drift") and not is_wiring("ml_assets.metadata")


def test_logic_never_imports_wiring() -> None:
    problems = wiring_violations(IMPORTS)
    assert not problems, "\n".join(problems)


def test_logic_units_follow_the_data_flow() -> None:
    problems = order_violations(IMPORTS, list(find_modules(PACKAGE_DIR))) + unit_cycles(IMPORTS)
    assert not problems, "\n".join(problems)


def test_no_import_cycle_between_modules() -> None:
    problems = module_cycles(IMPORTS)
    assert not problems, "\n".join(problems)


def test_group_wiring_imports_only_its_own_unit_and_lower_ones() -> None:
    problems = group_wiring_violations([i for i in IMPORTS
                                        if (i.importer, i.imported) not in KNOWN_GROUP_WIRING_EXCEPTIONS])
    gone = set(KNOWN_GROUP_WIRING_EXCEPTIONS) - {(i.importer, i.imported) for i in IMPORTS}
    problems += [f"{a} no longer imports {b}: remove it from KNOWN_GROUP_WIRING_EXCEPTIONS" for a, b in sorted(gone)]
    assert not problems, "\n".join(problems)


def test_each_rule_names_the_offending_module_and_import(tmp_path: Path) -> None:
    """The checks themselves: a made-up package breaking each rule once."""
    pkg = tmp_path / PACKAGE
    files = {
        "__init__.py": "",
        "storage.py": "def f():\n    from ml_assets.resources import thing\n",
        "resources/__init__.py": "thing = 1\n",
        "registry/__init__.py": "",
        "registry/gates.py": "from ml_assets.monitoring.performance import roc_auc\n",
        "monitoring/__init__.py": "",
        "monitoring/performance.py": "def roc_auc():\n    from ..registry import gates\n",
        "monitoring/assets.py": "from ml_assets.monitoring import performance\n",
        "oddity.py": "import ml_assets.storage\n",
    }
    for name, text in files.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    imports = find_imports(pkg)

    assert wiring_violations(imports) == [
        "ml_assets.storage imports ml_assets.resources (line 2): "
        "logic module ml_assets.storage must not import the wiring module ml_assets.resources"]
    order = order_violations(imports, list(find_modules(pkg)))
    assert "logic unit 'oddity' (ml_assets.oddity) is not placed in LOGIC_LAYERS" in order
    assert ("ml_assets.registry.gates imports ml_assets.monitoring.performance (line 1): "
            "'registry' may import only lower layers, and 'monitoring' is in a higher layer") in order
    assert len(order) == 2
    assert unit_cycles(imports) == [
        "logic units import each other: ml_assets.monitoring.performance imports ml_assets.registry.gates (line 2)"
        " -> ml_assets.registry.gates imports ml_assets.monitoring.performance (line 1)"]
    assert module_cycles(imports) == [
        "import cycle: ml_assets.monitoring.performance imports ml_assets.registry.gates (line 2)"
        " -> ml_assets.registry.gates imports ml_assets.monitoring.performance (line 1)"]
    assert group_wiring_violations(imports) == []  # monitoring/assets.py imports its own unit
    assert group_wiring_violations([Import("ml_assets.ingestion.assets", "ml_assets.monitoring.drift", 7)]) == [
        "ml_assets.ingestion.assets imports ml_assets.monitoring.drift (line 7): "
        "the 'ingestion' group's wiring must not import 'monitoring', a unit above (or beside) 'ingestion'"]
    assert group_wiring_violations([Import("ml_assets.definitions", "ml_assets.monitoring.drift", 7),
                                     Import("ml_assets.resources.feast", "ml_assets.features.store", 7),
                                     Import("ml_assets.monitoring.assets", "ml_assets.registry.promotion", 7)]) == []
    same_layer = order_violations([Import("ml_assets.links", "ml_assets.instance", 3)], [],
                                  layers=(("links", "instance"),))
    assert same_layer == ["ml_assets.links imports ml_assets.instance (line 3): "
                          "'links' may import only lower layers, and 'instance' is in its own layer"]
