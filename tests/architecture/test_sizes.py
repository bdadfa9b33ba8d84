"""No module over 400 lines, no function over 60, no class hidden in a function."""

from __future__ import annotations

from pathlib import Path

from sizes import MAX_FUNCTION_LINES, MAX_MODULE_LINES, check_source, check_tree

ROOT = Path(__file__).resolve().parents[2]


def test_the_tree_keeps_the_size_rules():
    assert check_tree(ROOT) == []


def test_a_long_function_is_reported():
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    problems = check_source(f"def long():\n{body}\n", "m.py")
    assert problems == [f"m.py:1: long is {MAX_FUNCTION_LINES + 1} lines (at most 60)"]


def test_a_function_at_the_limit_passes():
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES - 1))
    assert check_source(f"def fits():\n{body}\n", "m.py") == []


def test_a_long_module_is_reported():
    text = "\n".join(f"x{i} = {i}" for i in range(MAX_MODULE_LINES + 1))
    assert check_source(text, "m.py") == [f"m.py: {MAX_MODULE_LINES + 1} lines (at most 400)"]


def test_a_class_inside_a_function_is_reported():
    text = "def factory():\n    class Hidden:\n        pass\n    return Hidden\n"
    assert check_source(text, "m.py") == ["m.py:2: class Hidden is defined inside a function"]
