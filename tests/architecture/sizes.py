"""Size rules that keep modules readable: short modules, short functions, no hidden classes.

- a module is at most ``MAX_MODULE_LINES`` lines;
- a function or method is at most ``MAX_FUNCTION_LINES`` lines, from ``def`` to its last line;
- a class is defined at module level (or in another class), never inside a function, so it
  can be imported and tested on its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
CHECKED = ("tuneops", "workloads", "infra", "policies", "scripts", "tests")
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


def _hidden_classes(tree: ast.AST) -> list[ast.ClassDef]:
    hidden = []
    for func in ast.walk(tree):
        if isinstance(func, FUNCTIONS):
            hidden += [n for n in ast.walk(func) if isinstance(n, ast.ClassDef)]
    return hidden


def check_source(text: str, name: str) -> list[str]:
    problems = []
    lines = len(text.splitlines())
    if lines > MAX_MODULE_LINES:
        problems.append(f"{name}: {lines} lines (at most {MAX_MODULE_LINES})")
    tree = ast.parse(text, filename=name)
    for node in ast.walk(tree):
        if isinstance(node, FUNCTIONS):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                problems.append(
                    f"{name}:{node.lineno}: {node.name} is {length} lines "
                    f"(at most {MAX_FUNCTION_LINES})"
                )
    for cls in _hidden_classes(tree):
        problems.append(f"{name}:{cls.lineno}: class {cls.name} is defined inside a function")
    return problems


def check_tree(root: Path) -> list[str]:
    problems: list[str] = []
    for top in CHECKED:
        for path in sorted((root / top).rglob("*.py")):
            if "cdktf.out" in path.parts or ".gen" in path.parts:
                continue
            rel = str(path.relative_to(root))
            problems += check_source(path.read_text(encoding="utf-8"), rel)
    return problems
