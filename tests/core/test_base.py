"""The base layer: typed config with overlays, atomic writes, and the CLI's error contract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tuneops.core.config import StrictModel, apply_overrides, load_config, option_overrides
from tuneops.core.errors import UserError
from tuneops.core.io import atomic_dir, atomic_write_json, atomic_write_jsonl, iter_jsonl


class Inner(StrictModel):
    rank: int = 8
    alpha: float = 16.0


class Cfg(StrictModel):
    name: str
    inner: Inner = Inner()


def test_overlay_and_overrides_merge_in_order(tmp_path):
    (tmp_path / "base.yaml").write_text("name: a\ninner:\n  rank: 4\n  alpha: 8\n")
    (tmp_path / "base.prod.yaml").write_text("inner:\n  rank: 32\n")
    cfg = load_config(Cfg, tmp_path / "base.yaml", env="prod", overrides=["inner.alpha=64"])
    assert (cfg.name, cfg.inner.rank, cfg.inner.alpha) == ("a", 32, 64.0)
    plain = load_config(Cfg, tmp_path / "base.yaml", env="dev")
    assert plain.inner.rank == 4


def test_overrides_index_into_lists_and_name_what_is_wrong():
    data = {"sources": [{"name": "docs", "max_pairs": 10}, {"name": "api", "max_pairs": 300}]}
    out = apply_overrides(data, ["sources.1.max_pairs=40", "sources.-2.name=notes"])
    assert out["sources"] == [{"name": "notes", "max_pairs": 10}, {"name": "api", "max_pairs": 40}]
    assert data["sources"][1]["max_pairs"] == 300  # the input is left alone
    assert apply_overrides({}, ["a.b.c=1"]) == {"a": {"b": {"c": 1}}}
    with pytest.raises(UserError, match="index 2 is outside the list's 2 item"):
        apply_overrides(data, ["sources.2.max_pairs=1"])
    with pytest.raises(UserError, match="'api' is in a list; give an index"):
        apply_overrides(data, ["sources.api.max_pairs=1"])
    with pytest.raises(UserError, match="the value there is not a mapping"):
        apply_overrides({"name": "x"}, ["name.first=y"])
    with pytest.raises(UserError, match=r"must look like key\.sub=value"):
        apply_overrides(data, ["sources"])


def test_command_line_options_become_overrides_after_set():
    given = option_overrides(
        ["inner.rank=2"], {"name": "b", "inner.rank": 16, "flag": False, "splits": ["x", "y"]}
    )
    assert given == ["inner.rank=2", "name=b", "inner.rank=16", "flag=false", "splits=[x,y]"]
    assert option_overrides(None, {"name": None}) == []


def test_unknown_and_bad_fields_are_named(tmp_path):
    (tmp_path / "c.yaml").write_text("name: a\ninner:\n  rnak: 4\n  alpha: lots\n")
    with pytest.raises(UserError) as err:
        load_config(Cfg, tmp_path / "c.yaml")
    msg = str(err.value)
    assert "inner.rnak" in msg and "inner.alpha" in msg and "c.yaml" in msg


def test_bad_yaml_names_the_line(tmp_path):
    (tmp_path / "c.yaml").write_text("name: a\ninner: [1, 2\n")
    with pytest.raises(UserError, match=r"c.yaml line \d+"):
        load_config(Cfg, tmp_path / "c.yaml")


def test_atomic_write_leaves_old_file_when_writer_fails(tmp_path):
    target = tmp_path / "out.jsonl"
    atomic_write_json(target, {"v": 1})

    def boom():
        yield {"v": 2}
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write_jsonl(target, boom())
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_jsonl_reader_numbers_lines_skips_blank_ones_and_lets_the_caller_word_errors():
    reader = iter_jsonl(
        ['{"a": 1}', "  ", "[2]", "{bad"], lambda number, exc: UserError(f"line {number}: bad")
    )
    assert next(reader) == (1, {"a": 1})
    assert next(reader) == (3, [2])
    with pytest.raises(UserError, match="line 4: bad"):
        next(reader)


def test_atomic_dir_replaces_whole_directory(tmp_path):
    target = tmp_path / "snap"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "b").write_text("2")
        raise RuntimeError
    assert sorted(p.name for p in target.iterdir()) == ["a"]
    with atomic_dir(target) as tmp:
        (tmp / "c").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snap"]


def test_cli_help_lists_the_areas():
    exe = Path(sys.executable).with_name("tuneops")
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0
    assert "tuneops" in proc.stdout and "data" in proc.stdout


def test_cli_turns_user_errors_into_one_line(monkeypatch, capsys):
    import typer

    from tuneops import cli

    def broken():
        raise UserError("config x.yaml: field rank must be positive")

    fake = typer.Typer()
    fake.command()(broken)
    monkeypatch.setattr(cli, "app", fake)
    monkeypatch.setattr(sys, "argv", ["tuneops"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: config x.yaml: field rank must be positive"
    assert "Traceback" not in err


def test_a_misspelt_environment_overlay_is_an_error_naming_the_known_ones(tmp_path):
    from tuneops.core.config import load_config
    from tuneops.core.environments import environment_names

    base = tmp_path / "default.yaml"
    base.write_text("name: x\n")
    assert environment_names() == ["dev", "local", "prod", "staging"]
    with pytest.raises(UserError, match=r"unknown environment 'stagign'; known: dev, local"):
        load_config(Cfg, base, env="stagign")
    # A known environment without an overlay file uses the base config.
    assert load_config(Cfg, base, env="staging").name == "x"


def test_the_old_positional_environment_is_refused_with_the_new_spelling():
    from tuneops.core.environments import refuse_positional_env

    refuse_positional_env(None, "gitops render")
    with pytest.raises(UserError, match=r"`tuneops gitops render --env dev`"):
        refuse_positional_env("dev", "gitops render")
