"""Robust parsing of judge replies, and the versioned prompt."""

from __future__ import annotations

import pytest

from workloads.evaluate.config import JudgeConfig
from workloads.evaluate.judge import load_prompt, parse_grade


@pytest.mark.parametrize(
    ("reply", "grade"),
    [
        ("Grade: 4", 4),
        ("grade:5", 5),
        ("**Grade:** 3", 3),
        ("Score = 2 because the answer misses the lock", 2),
        ("The rating is 1.", 1),
        ("4/5 - mostly right", 4),
        ("I would give it 3 out of 5.", 3),
        ("5", 5),
        ("4.0", 4),
        ("  2 - wrong command", 2),
        ("Grade: 4\nThe answer names 3 of the 5 facts", 4),
    ],
)
def test_parse_grade_accepts_common_shapes(reply, grade):
    assert parse_grade(reply) == grade


@pytest.mark.parametrize(
    "reply",
    ["", "The answer is good.", "Grade: 7", "between 2 and 4", "10", "3.5", "Grade: N"],
)
def test_parse_grade_refuses_to_guess(reply):
    assert parse_grade(reply) is None


def test_prompt_is_versioned_and_renders_every_slot():
    prompt = load_prompt(JudgeConfig())
    assert prompt.name == "judge_v1"
    assert prompt.version.startswith("judge_v1@") and len(prompt.digest) == 12
    text = prompt.render("What is X?", "X is Y.", "")
    assert "What is X?" in text and "X is Y." in text and "(empty answer)" in text
    assert "{{" not in text
