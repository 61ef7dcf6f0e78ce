"""The monitoring group's Dagster wiring stays thin: no function in its wiring files (the asset,
check and sensor bodies, helpers, and the functions nested in them) is longer than
``MAX_LINES``, so the logic lives in plain modules (daily.py, verdict.py, performance.py, …).

A function's length is counted from its ``def`` line to its last line, without its docstring and
without the functions (and their decorators) nested in it, which are measured on their own: a
group factory is its declarations, each asset body is measured as a function of its own, and a
decorator's arguments (the asset's declaration) are not body.
"""

from __future__ import annotations

import ast
from pathlib import Path

MAX_LINES = 40
MONITORING = Path(__file__).resolve().parents[2] / "ml_assets" / "monitoring"
WIRING = ("assets.py", "sensors.py", "checks.py")

Function = ast.FunctionDef | ast.AsyncFunctionDef


def _span(node: ast.AST) -> set[int]:
    first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
    return set(range(first, node.end_lineno + 1))


def _nested(fn: Function) -> list[Function]:
    """The functions defined inside `fn`, not counting those inside them."""
    found, todo = [], list(ast.iter_child_nodes(fn))
    while todo:
        node = todo.pop()
        if isinstance(node, Function):
            found.append(node)
        else:
            todo.extend(ast.iter_child_nodes(node))
    return found


def function_length(fn: Function) -> int:
    lines = set(range(fn.lineno, fn.end_lineno + 1))
    body = fn.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        lines -= _span(body[0])
    for inner in _nested(fn):
        lines -= _span(inner)
    return len(lines)


def long_functions(source: str, filename: str, limit: int = MAX_LINES) -> list[str]:
    """'file: name (qualified) is N lines' for every function of `source`, nested ones included, over `limit`."""
    problems = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, Function):
                name = f"{prefix}{child.name}"
                if (n := function_length(child)) > limit:
                    problems.append(f"{filename}: {name} is {n} lines (at most {limit}, docstring excluded)")
                visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source, filename=filename), "")
    return problems


def test_monitoring_wiring_functions_are_short() -> None:
    files = [MONITORING / name for name in WIRING if (MONITORING / name).exists()]
    assert {f.name for f in files} >= {"assets.py", "sensors.py"}
    problems = [p for f in files for p in long_functions(f.read_text(), f"monitoring/{f.name}")]
    assert not problems, "\n".join(problems)


def test_the_measure_names_each_long_function_and_its_length() -> None:
    def lines(n: int, indent: int) -> str:
        return "".join(f"{' ' * indent}x{i} = {i}\n" for i in range(n))

    source = (
        "def build():\n"
        "    @decorator(\n        many='arguments',\n    )\n"
        f"    def long_asset():\n{lines(41, 8)}"  # 42 lines
        "    def short_asset():\n"
        '        """A docstring\n        of three\n        lines."""\n'
        f"{lines(39, 8)}"  # 40 lines once the docstring is left out (43 with it)
        "    return [long_asset, short_asset]\n"
        "class Holder:\n"
        f"    def method(self):\n{lines(40, 8)}        return 1\n"  # 42 lines
    )
    assert long_functions(source, "f.py") == [
        "f.py: build.long_asset is 42 lines (at most 40, docstring excluded)",
        "f.py: Holder.method is 42 lines (at most 40, docstring excluded)",
    ]
    build = ast.parse(source).body[0]
    assert function_length(build) == 2  # its def line and its return; the nested functions are measured apart
    assert len(long_functions(source, "f.py", limit=41)) == 2
    assert long_functions(source, "f.py", limit=42) == []
