"""Imports point one way: the rule in layers.py holds over the whole tree, and it bites."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from layers import check_tree

ROOT = Path(__file__).resolve().parents[2]


def test_every_import_follows_the_layer_rule():
    assert [str(v) for v in check_tree(ROOT)] == []


def _copy(tmp_path: Path) -> Path:
    for top in ("tuneops", "workloads", "infra", "policies", "scripts"):
        shutil.copytree(ROOT / top, tmp_path / top, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


@pytest.mark.parametrize(
    ("target", "planted", "imported"),
    [
        ("tuneops/core/io.py", "from workloads.models import refs", "workloads.models.refs"),
        ("workloads/models/refs.py", "import workloads.train.config", "workloads.train.config"),
        ("workloads/train/config.py", "from infra.config import Environment", "infra.config"),
        ("infra/config.py", "    from workloads.serve import process", "workloads.serve"),
        ("policies/gate.py", "from infra import ops", "infra.ops"),
        ("workloads/serve/config.py", "from tuneops.cli import app", "tuneops.cli.app"),
        ("scripts/bench_data.py", "from tuneops.cli.demo import runner", "tuneops.cli.demo"),
        ("infra/app.py", "importlib.import_module('workloads.deploy')", "workloads.deploy"),
    ],
)
def test_a_planted_violation_is_reported(tmp_path, target, planted, imported):
    root = _copy(tmp_path)
    path = root / target
    body = path.read_text(encoding="utf-8")
    if planted.startswith("    "):  # inside a function: imports in function bodies count too
        planted = f"def _planted():\n{planted}\n"
    path.write_text(f"{body}\n{planted}\n", encoding="utf-8")
    found = [v for v in check_tree(root) if v.path == str(path)]
    assert len(found) == 1, found
    assert found[0].imported.startswith(imported)


def test_relative_imports_are_resolved_before_checking(tmp_path):
    root = _copy(tmp_path)
    path = root / "tuneops" / "core" / "paths.py"
    path.write_text(path.read_text() + "\nfrom ..cli import app\n", encoding="utf-8")
    found = [v.imported for v in check_tree(root) if v.path == str(path)]
    assert found == ["tuneops.cli.app"]
