"""The manners of the whole `tuneops` command line, checked over every command in its tree:
`--version`; boolean options as flags (never `--resume <bool>`); fixed choices listed in
`--help`; one spelling for every option, the same short alias everywhere; renamed spellings
still accepted, hidden."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from collections import defaultdict

import pytest
import typer
from typer.core import TyperGroup, TyperOption
from typer.testing import CliRunner

import tuneops
from tuneops.cli import OLD_SPELLINGS, app

# Spellings that mean what an option of the tree already means: none may appear.
SYNONYMS = {
    "--output": {"--out", "--outdir", "--output-dir", "--out-dir", "--output-file", "--dest"},
    "--env": {"--environment", "--environ"},
    "--set": {"--override", "--overrides", "--param", "--params"},
    "--config": {"--config-file", "--cfg", "--conf"},
    "--dry-run": {"--dryrun", "--plan-only"},
    "--log-mlflow": {"--no-log", "--mlflow", "--track"},
}
# Options with a fixed set of values, and what their help must list.
CHOICES = {
    ("data", "build", "--on-error"): ["fail", "quarantine"],
    ("eval", "--split"): ["benchmark", "test"],
    ("local", "up", "--only"): ["moto", "postgres", "mlflow", "model-server"],
}
# Boolean options whose negative means something: each is a --x/--no-x pair.
PAIRS = {
    ("train", "--resume"): "--no-resume",
    ("eval", "--log-mlflow"): "--no-log-mlflow",
    ("data", "build", "--log-mlflow"): "--no-log-mlflow",
    ("eval", "--judge"): "--no-judge",
}


def _walk(command, path=()):
    yield path, command
    if isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            yield from _walk(sub, (*path, name))


ROOT = typer.main.get_command(app)
COMMANDS = dict(_walk(ROOT))
LEAVES = {path: cmd for path, cmd in COMMANDS.items() if not isinstance(cmd, TyperGroup)}


def _options(command) -> list[TyperOption]:
    return [p for p in command.params if isinstance(p, TyperOption) and not p.hidden]


def _help(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


def test_version_prints_the_package_version():
    done = subprocess.run(
        [sys.executable, "-m", "tuneops.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    installed = importlib.metadata.version("tuneops")
    assert done.stdout == f"tuneops {installed}\n"
    assert tuneops.__version__ == installed  # the code and the package agree
    assert "--version" in _help(())


def test_the_tree_is_walked_whole():
    assert len(LEAVES) >= 30
    for path in [("train",), ("data", "build"), ("local", "status"), ("infra", "plan")]:
        assert path in LEAVES


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=lambda p: " ".join(p) or "tuneops")
def test_help_shows_flags_as_flags_and_lists_every_choice(path):
    text = _help(path)
    assert "<bool>" not in text, text  # a bool option that takes a value, or a flag shown so
    for option in _options(COMMANDS[path]):
        descriptor = option.type_descriptor
        if descriptor.annotation is bool:
            assert option.is_flag, f"{' '.join(path)} {option.opts}: a bool must be a flag"
        if descriptor.is_choice:
            listed = "|".join(str(choice) for choice in descriptor.choices)
            assert listed in text, f"{' '.join(path)} {option.opts}: choices {listed} not shown"


@pytest.mark.parametrize("where", sorted(CHOICES), ids=" ".join)
def test_options_with_fixed_values_are_typed_choices(where):
    *path, name = where
    (option,) = [o for o in _options(LEAVES[tuple(path)]) if name in o.opts]
    assert option.type_descriptor.is_choice
    listed = "|".join(CHOICES[where])
    assert re.search(rf"<{listed}>|<list\[{listed}\]>", _help(tuple(path)))
    bad = CliRunner().invoke(app, [*path, name, "no-such-value"])
    assert bad.exit_code == 2 and "is not one of" in bad.output


@pytest.mark.parametrize("where", sorted(PAIRS), ids=" ".join)
def test_booleans_with_a_meaningful_negative_are_flag_pairs(where):
    *path, name = where
    (option,) = [o for o in _options(LEAVES[tuple(path)]) if name in o.opts]
    assert option.is_flag and option.secondary_opts == [PAIRS[where]]
    assert f"{name} / {PAIRS[where]}" in _help(tuple(path))


def test_one_spelling_per_option_and_one_short_alias_per_spelling():
    spelled = set()
    shorts_of = defaultdict(set)  # long name -> the short aliases it has, per command
    long_of = defaultdict(set)  # short alias -> the long names it stands for
    kind_of = defaultdict(set)  # long name -> (flag or value, its negative)
    for command in LEAVES.values():
        for option in _options(command):
            longs = [o for o in option.opts if o.startswith("--")]
            shorts = frozenset(o for o in option.opts if not o.startswith("--"))
            spelled.update(longs + option.secondary_opts)
            for name in longs:
                shorts_of[name].add(shorts)
                kind_of[name].add((option.is_flag, tuple(option.secondary_opts)))
            for short in shorts:
                long_of[short].update(longs)
    for canonical, others in SYNONYMS.items():
        assert not others & spelled, f"spelled {sorted(others & spelled)}; use {canonical}"
    assert {s: ls for s, ls in long_of.items() if len(ls) > 1} == {}
    assert {n: s for n, s in shorts_of.items() if len(s) > 1} == {}
    assert {n: k for n, k in kind_of.items() if len(k) > 1} == {}
    # The common options carry the common short aliases.
    for name, short in {"--env": "-e", "--config": "-c", "--output": "-o", "--model": "-m"}.items():
        assert shorts_of[name] == {frozenset({short})}, name


@pytest.mark.parametrize("old,new", sorted(OLD_SPELLINGS.items()))
def test_renamed_options_are_still_accepted_and_hidden(old, new):
    users = [
        path
        for path, command in LEAVES.items()
        if any(f"--{new}" in o.opts + o.secondary_opts for o in _options(command))
    ]
    assert users, f"--{new} is no option of any command"
    for path in users:
        command = LEAVES[path]
        (option,) = [o for o in _options(command) if f"--{new}" in o.opts + o.secondary_opts]
        args = [f"--{old}"] if option.is_flag else [f"--{old}", "value"]
        result = CliRunner().invoke(app, [*path, *args, "--help"])
        assert result.exit_code == 0, f"{' '.join(path)} --{old}: {result.output}"
        assert f"--{old} " not in result.output  # hidden: --help names the new spelling


def test_an_old_spelling_reaches_the_option_it_was_renamed_to(tmp_path):
    from tuneops.core.errors import UserError

    result = CliRunner().invoke(app, ["data", "show", "tiny", "--out", str(tmp_path)])
    assert isinstance(result.exception, UserError)
    assert f"under {tmp_path}" in str(result.exception)
