"""The layer rule, as data, and a checker that reads every import with ``ast``.

Dependencies point one way (the README's "Layers" section says the same in words):

    tuneops.cli (the CLI and the demo)             imported by nothing
    scripts                                        anything below the CLI
    infra                 workloads.<area>         areas may use each other
    policies (the gate)   workloads.models         the one model package
    tuneops.core                                   imports nothing of the project

``infra`` and ``workloads`` never import each other; both may call the policy gate.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PROJECT = ("tuneops", "workloads", "infra", "policies", "scripts")

# layer -> the layers it may import (itself included). The first matching prefix wins, so
# the more specific names come first.
LAYERS: dict[str, tuple[str, ...]] = {
    "tuneops.cli": ("tuneops", "workloads", "infra", "policies"),
    "tuneops.core": ("tuneops.core",),
    "tuneops": ("tuneops",),  # the package's own __init__: the version, nothing else
    "workloads.models": ("tuneops.core", "workloads.models"),
    "workloads": ("tuneops.core", "workloads", "policies"),
    "policies": ("tuneops.core", "policies"),
    "infra": ("tuneops.core", "infra", "policies"),
    "scripts": ("tuneops.core", "workloads", "infra", "policies", "scripts"),
}
# Nobody but the CLI itself imports the CLI or the demo.
TOP = "tuneops.cli"


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    importer: str
    imported: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.importer} imports {self.imported}"


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer_of(name: str) -> str | None:
    return next((layer for layer in LAYERS if _within(name, layer)), None)


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            anchor = module.split(".")
            anchor = anchor if is_package else anchor[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        return [f"{base}.{alias.name}" if base else alias.name for alias in node.names]
    return []


def _dynamic(node: ast.AST) -> str | None:
    """``importlib.import_module("x")`` or ``__import__("x")`` with a literal name."""
    if not isinstance(node, ast.Call) or not node.args:
        return None
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    arg = node.args[0]
    if name in ("import_module", "__import__") and isinstance(arg, ast.Constant):
        return str(arg.value)
    return None


def check_file(root: Path, path: Path) -> list[Violation]:
    module = module_name(root, path)
    layer = layer_of(module)
    if layer is None:
        return []
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        names = _imported(node, module, path.name == "__init__.py")
        dynamic = _dynamic(node)
        if dynamic and dynamic.split(".")[0] in PROJECT:
            found.append(Violation(str(path), node.lineno, module, f"{dynamic} (by name)"))
        for name in names:
            if name.split(".")[0] not in PROJECT:
                continue
            allowed = any(_within(name, ok) for ok in LAYERS[layer])
            if _within(name, TOP) and layer != TOP:
                allowed = False
            if not allowed:
                found.append(Violation(str(path), node.lineno, module, name))
    return found


def check_tree(root: Path) -> list[Violation]:
    found: list[Violation] = []
    for top in PROJECT:
        for path in sorted((root / top).rglob("*.py")) if (root / top).is_dir() else []:
            found += check_file(root, path)
    return found
