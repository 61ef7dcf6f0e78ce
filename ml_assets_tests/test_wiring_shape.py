"""Thin wiring, checked on the source: the functions of the ingestion, features, datasets, registry,
training and monitoring groups' Dagster wiring (assets.py, checks.py, sensors.py) stay short, because their
logic lives in the groups' plain modules.

A function's length counts its own lines, from ``def`` to its last line, without its
docstring and without the functions defined inside it (each of those is measured on its
own; their decorators are declarations of the enclosing factory and count for neither).
So a ``build`` factory is measured by what it does besides declaring assets, and every
asset and check body by its own lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "ml_assets"
GROUPS = ("ingestion", "features", "datasets", "registry", "training", "monitoring")
WIRING = ("assets.py", "checks.py", "sensors.py")
MAX_LINES = 40


def wiring_files(package_dir: Path = PACKAGE_DIR) -> list[Path]:
    return [p for g in GROUPS for name in WIRING if (p := package_dir / g / name).exists()]


Function = ast.FunctionDef | ast.AsyncFunctionDef


def own_lines(fn: Function) -> int:
    lines = set(range(fn.lineno, (fn.end_lineno or fn.lineno) + 1))
    first = fn.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        lines -= set(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    for node in ast.walk(fn):
        if node is not fn and isinstance(node, Function):
            start = min([d.lineno for d in node.decorator_list] + [node.lineno])
            lines -= set(range(start, (node.end_lineno or node.lineno) + 1))
    return len(lines)


def function_lengths(source: str) -> dict[str, int]:
    """Every function (nested ones by their dotted path, e.g. ``build.golden_set``) and its own length."""
    out: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, Function):
                name = f"{prefix}{child.name}"
                out[name] = own_lines(child)
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return out


def too_long(path: Path, limit: int = MAX_LINES) -> list[str]:
    return [f"{path.parent.name}/{path.name}: {name} is {n} lines long (limit {limit}, docstring excluded); "
            f"move its logic into a plain module of the group"
            for name, n in function_lengths(path.read_text()).items() if n > limit]


def test_the_scan_sees_the_wiring() -> None:
    files = wiring_files()
    assert {f"{p.parent.name}/{p.name}" for p in files} >= {"ingestion/assets.py", "features/assets.py",
                                                             "datasets/assets.py", "registry/assets.py",
                                                             "training/assets.py", "monitoring/assets.py",
                                                             "monitoring/checks.py", "monitoring/sensors.py"}
    lengths = function_lengths((PACKAGE_DIR / "registry" / "assets.py").read_text())
    assert {"build", "build.registered_model", "build.champion_model"} <= set(lengths)
    assert all(n > 0 for n in lengths.values())


def test_asset_and_check_bodies_are_thin() -> None:
    problems = [p for path in wiring_files() for p in too_long(path)]
    assert not problems, "\n".join(problems)


def test_the_measure_names_the_long_function_and_skips_docstrings_and_nested_bodies(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(41))
    source = (f'def build():\n    """Doc\n\n    string."""\n\n    @decorator(\n        arg=1,\n    )\n'
              f'    def asset():\n        """One line."""\n{body.replace("    ", "        ")}\n\n    return [asset]\n'
              f'\n\ndef short():\n    """A\n    long\n    docstring."""\n    return 1\n')
    lengths = function_lengths(source)
    assert lengths == {"build": 4, "build.asset": 42, "short": 2}  # asset: def + 41; build: def, 2 blanks, return
    path = tmp_path / "training" / "assets.py"
    path.parent.mkdir()
    path.write_text(source)
    assert too_long(path) == ["training/assets.py: build.asset is 42 lines long (limit 40, docstring excluded); "
                              "move its logic into a plain module of the group"]
    assert too_long(path, limit=42) == []
