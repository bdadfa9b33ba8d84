"""The GitHub workflows parse, have the expected jobs, call only make targets that exist, pin
every action by commit, and sign, attest and keep an SBOM of every image they release."""

from __future__ import annotations

import re

import pytest
import yaml

from tuneops.core.paths import REPO_ROOT

WORKFLOWS = REPO_ROOT / ".github" / "workflows"
SHELL_OPERATORS = {">", ">>", "|", "&&", "||", ";", "2>&1"}
# `uses: owner/repo[/path]@<full commit SHA> # <the release tag it is>`
PINNED_ACTION = re.compile(
    r"uses: ([\w.-]+/[\w./-]+)@([0-9a-f]{40}) # v\d+(\.\d+){2}$", re.MULTILINE
)
EXPECTED = {
    "ci.yml": {"lint", "test", "synth-policy", "images-lint"},
    "plan.yml": {"plan", "apply"},
    "ct.yml": {"train-evaluate-register"},
    "cd.yml": {"images", "staging", "prod"},
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
            # The command ends where the shell's redirections and pipes begin.
            ends = [i for i, w in enumerate(words) if w in SHELL_OPERATORS]
            words = words[: ends[0]] if ends else words
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


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("*.yml")), ids=lambda p: p.name)
def test_every_action_is_pinned_by_commit_sha_with_its_tag(path):
    uses = [ln.strip().removeprefix("- ") for ln in path.read_text().splitlines() if "uses:" in ln]
    assert uses, f"{path.name} uses no action"
    unpinned = [ln for ln in uses if not PINNED_ACTION.fullmatch(ln)]
    assert unpinned == [], f"{path.name}: pin each action by its 40-hex commit, tag in a comment"


def test_the_same_action_is_pinned_to_the_same_commit_everywhere():
    commits: dict[str, set[str]] = {}
    for path in WORKFLOWS.glob("*.yml"):
        for match in PINNED_ACTION.finditer(path.read_text().replace("- uses:", "uses:")):
            commits.setdefault(match[1], set()).add(match[2])
    assert {"actions/checkout", "sigstore/cosign-installer"} <= set(commits)
    assert {a: c for a, c in commits.items() if len(c) > 1} == {}


def _steps(job: dict) -> tuple[list[str], list[str]]:
    uses = [step["uses"].split("@")[0] for step in job["steps"] if "uses" in step]
    runs = [step["run"] for step in job["steps"] if "run" in step]
    return uses, runs


def test_released_images_get_an_sbom_a_keyless_signature_and_an_attestation():
    cd = _load("cd.yml")
    assert cd["on"]["push"]["tags"] == ["v*"]
    job = cd["jobs"]["images"]
    assert job["permissions"]["id-token"] == "write", "keyless signing needs the OIDC token"
    assert set(job["strategy"]["matrix"]["image"]) == {"serve", "serve-gpu", "train", "eval"}
    uses, runs = _steps(job)
    assert "sigstore/cosign-installer" in uses and "actions/upload-artifact" in uses
    script = "\n".join(runs)
    assert "dpkg-query -W" in script and 'echo "# $ID $VERSION_ID"' in script
    assert "make sbom IMAGE=" in script
    sign = script.index("cosign sign --yes")
    attest = script.index("cosign attest --yes --type cyclonedx --predicate")
    assert sign < attest < script.index("cosign verify-attestation --type cyclonedx")
    assert "--key" not in script, "keyless: no signing key"
    upload = next(
        s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact")
    )
    assert upload["with"]["path"].endswith(".cdx.json")
    # A model release never rebuilds the images, and an image release never deploys a model.
    assert cd["jobs"]["staging"]["if"] == cd["jobs"]["prod"]["if"] == "github.event_name != 'push'"


def test_ci_installs_torch_from_the_index_whose_build_the_lock_hashes():
    for name in EXPECTED:
        data = _load(name)
        uses_make = any("make " in line for line in _run_lines(data))
        assert not uses_make or data["env"].get("PIP_EXTRA_INDEX_URL"), name
