"""The GitHub workflows parse, have the expected jobs, and call only make targets that exist."""

from __future__ import annotations

import re

import pytest
import yaml

from tuneops.core.paths import REPO_ROOT

WORKFLOWS = REPO_ROOT / ".github" / "workflows"
EXPECTED = {
    "ci.yml": {"lint", "test", "synth-policy", "images-lint"},
    "plan.yml": {"plan", "apply"},
    "ct.yml": {"train-evaluate-register"},
    "cd.yml": {"staging", "prod"},
    "drift.yml": {"drift"},
}


def _load(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as True.
    data["on"] = data.pop(True, data.get("on"))
    return data


def _make_targets() -> set[str]:
    text = (REPO_ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z0-9_.-]+):", text, flags=re.MULTILINE))


def _run_lines(data: dict) -> list[str]:
    lines = []
    for job in data["jobs"].values():
        for step in job.get("steps", []):
            if "run" in step:
                lines.extend(step["run"].splitlines())
    return lines


def test_every_expected_workflow_exists():
    assert {p.name for p in WORKFLOWS.glob("*.yml")} >= set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_workflow_structure(name):
    data = _load(name)
    assert data["name"] and data["on"], "a workflow needs a name and triggers"
    assert set(data["jobs"]) == EXPECTED[name]
    for job_id, job in data["jobs"].items():
        assert "runs-on" in job, f"{name}:{job_id} has no runs-on"
        steps = job["steps"]
        assert steps and steps[0].get("uses", "").startswith("actions/checkout@")
        for step in steps:
            assert ("uses" in step) != ("run" in step), f"{name}:{job_id}: uses xor run"
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@[\w.-]+", step["uses"]), step["uses"]
        for need in (
            job.get("needs", []) if isinstance(job.get("needs"), list) else [job.get("needs")]
        ):
            assert need is None or need in data["jobs"]


def test_workflows_call_only_existing_make_targets():
    targets = _make_targets()
    called = set()
    for name in EXPECTED:
        for line in _run_lines(_load(name)):
            for match in re.finditer(r"\bmake\s+([A-Za-z0-9_.-]+)", line):
                called.add(match.group(1))
    assert called, "the workflows call make targets"
    missing = called - targets
    assert not missing, f"workflows call make targets missing from the Makefile: {missing}"


def test_triggers_match_their_purpose():
    ci = _load("ci.yml")["on"]
    assert "pull_request" in ci and ci["push"]["branches"] == ["main"]
    plan = _load("plan.yml")
    assert any(p.startswith("infra/") for p in plan["on"]["pull_request"]["paths"])
    assert any(p.startswith("platform/") for p in plan["on"]["pull_request"]["paths"])
    assert plan["jobs"]["apply"]["environment"] == "${{ matrix.env }}"
    ct = _load("ct.yml")["on"]
    assert "schedule" in ct and any("configs/data" in p for p in ct["push"]["paths"])
    cd = _load("cd.yml")
    assert cd["jobs"]["prod"]["needs"] == "staging" and cd["jobs"]["prod"]["environment"] == "prod"
    drift = _load("drift.yml")
    assert "schedule" in drift["on"]
    assert any("make drift ENV=" in line for line in _run_lines(drift))
    synth = _load("ci.yml")["jobs"]["synth-policy"]["strategy"]["matrix"]["env"]
    assert set(synth) == {"local", "dev", "staging", "prod"}


def _placeholder(word: str) -> str | None:
    """A shell word with its variables replaced by a value of the right kind (None: drop it)."""
    if word == '"${args[@]}"':
        return None
    word = word.strip('"')
    for name, value in (("MODEL", "models:/m@champion"), ("CANARY", "10"), ("CT_ENV", "dev")):
        word = word.replace(f"${{{name}}}", value).replace(f"${name}", value)
    return re.sub(r"\$\{?[A-Za-z_]+\}?", "run123", word)


def _tuneops_calls() -> list[list[str]]:
    calls = []
    for name in EXPECTED:
        for line in _run_lines(_load(name)):
            words = re.sub(r"\$\{\{[^}]*\}\}", "run123", line).split()
            if words and words[0].endswith("bin/tuneops"):
                calls.append([w for w in map(_placeholder, words[1:]) if w is not None])
    for line in (REPO_ROOT / "Makefile").read_text().splitlines():
        if line.strip().startswith("$(TUNEOPS)"):
            words = line.replace("$(ENV)", "dev").replace("$(MODEL)", "embedded:x").split()[1:]
            calls.append([w for w in words if not w.startswith("$(")])
    return calls


def test_every_tuneops_call_in_workflows_and_makefile_parses():
    """A renamed command or option must take its callers with it (the CLI parses each call)."""
    calls = _tuneops_calls()
    assert len(calls) > 15 and any("--env" in c for c in calls)
    for args in calls:
        assert _parse(args).callback is not None, args


def _parse(args: list[str]):
    """The command ``tuneops <args>`` runs, after parsing every option as the CLI would."""
    import typer

    from tuneops.cli import app

    command = typer.main.get_command(app)
    ctx = command.make_context("tuneops", list(args))
    while hasattr(command, "resolve_command"):  # a group: descend into the subcommand
        words = [*ctx._protected_args, *ctx.args]
        name, command, rest = command.resolve_command(ctx, words)
        ctx = command.make_context(name, rest, parent=ctx)
    return command


@pytest.mark.parametrize(
    "args",
    [
        ["infra", "plan", "--envv", "dev"],
        ["gitops", "render", "staging", "--model", "models:/m@champion"],
        ["no-such-command"],
    ],
)
def test_a_stale_call_does_not_parse(args):
    from tuneops.core.errors import UserError

    with pytest.raises((UserError, Exception)) as raised:
        _parse(args)
    assert raised.type.__name__ in ("UserError", "NoSuchOption", "UsageError", "BadParameter")
