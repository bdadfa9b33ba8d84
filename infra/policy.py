"""The policy gate: checkov, offline, with the project's custom checks and one skip list.

- ``check_stacks(env)`` scans the synthesized Terraform JSON of every stack of an environment.
  checkov's ``terraform_json`` scanner crashes on cdktf output that sets ``required_version``
  (bridgecrewio/checkov#7454), so it scans a copy of each stack with that key removed (the
  copy is otherwise byte-for-byte the synthesized JSON).
- ``check_terraform(paths)`` scans given Terraform JSON files or folders the same way.
- ``check_manifests(paths)`` scans rendered Kubernetes manifests (the GitOps gate).

Every check that runs is ours or checkov's own; skips come only from ``policies/skips.yaml``,
each with its reason.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field

from infra.config import load_environment, load_settings
from tuneops.core.config import StrictModel, read_yaml, validate
from tuneops.core.errors import UserError
from tuneops.core.io import atomic_write_json
from tuneops.core.paths import REPO_ROOT, cache_dir


class Skip(StrictModel):
    id: str = Field(pattern=r"^CKV2?_[A-Z0-9_]+$")
    reason: str = Field(min_length=10)
    frameworks: list[str] = Field(default_factory=lambda: ["terraform_json", "kubernetes"])
    # Environments the skip applies to; empty means every environment (and manifest scans).
    environments: list[str] = Field(default_factory=list)


class SkipList(StrictModel):
    skips: list[Skip] = Field(default_factory=list)


@dataclass
class PolicyResult:
    framework: str
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    resources: int = 0
    failures: list[str] = field(default_factory=list)
    by_check: dict[str, int] = field(default_factory=dict)  # failing check id -> count
    checks_run: list[str] = field(default_factory=list)
    scanned: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def summary(self) -> str:
        return (
            f"{self.passed} passed, {self.failed} failed, {self.skipped} skipped over "
            f"{self.resources} resources ({self.framework})"
        )

    def as_dict(self) -> dict:
        return {
            "framework": self.framework,
            "passed": self.passed,
            "failed": self.failed,
            "skipped": self.skipped,
            "resources": self.resources,
            "failures": self.failures,
        }


def _repo(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else REPO_ROOT / p


def load_skips(framework: str, environment: str | None = None) -> list[Skip]:
    path = _repo(load_settings().policy.skips)
    skips = validate(SkipList, read_yaml(path), str(path)).skips
    return [
        s
        for s in skips
        if framework in s.frameworks and (not s.environments or environment in s.environments)
    ]


def run_checkov(
    targets: list[Path],
    framework: str,
    checks_dir: Path,
    workdir: Path,
    environment: str | None = None,
    only_custom: bool = False,
) -> PolicyResult:
    """Run checkov over ``targets`` (files or folders) and parse its JSON report."""
    if not targets:
        raise UserError("nothing to scan: no files given to the policy gate")
    skips = load_skips(framework, environment)
    cmd = [
        sys.executable,
        "-m",
        "checkov.main",
        "--framework",
        framework,
        "--external-checks-dir",
        str(checks_dir),
        "--skip-download",
        "--output",
        "json",
        "--output-file-path",
        str(workdir / "report"),
        "--compact",
        "--soft-fail",
    ]
    if only_custom:
        ids = sorted(
            set(re.findall(r'id="(CKV2?_TUNEOPS_[A-Z0-9_]+)"', _sources(checks_dir)))
            | set(re.findall(r"id: (CKV2?_TUNEOPS_[A-Z0-9_]+)", _sources(checks_dir)))
        )
        cmd += ["--check", ",".join(ids)]
    if skips:
        cmd += ["--skip-check", ",".join(s.id for s in skips)]
    for target in targets:
        cmd += ["--directory" if target.is_dir() else "--file", str(target)]
    report_file = workdir / "report" / "results_json.json"
    report_file.unlink(missing_ok=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, check=False)
    try:
        report = json.loads(report_file.read_text()) if report_file.is_file() else []
    except json.JSONDecodeError as exc:
        raise UserError(
            f"checkov gave no JSON report (exit {proc.returncode}): "
            f"{(proc.stderr or proc.stdout).strip()[-800:]}"
        ) from exc
    reports = report if isinstance(report, list) else [report]
    result = PolicyResult(framework=framework, scanned=[str(t) for t in targets])
    failing: Counter[str] = Counter()
    resources: set[str] = set()
    for rep in reports:
        if not isinstance(rep, dict) or "results" not in rep:
            continue
        summary = rep.get("summary", {})
        result.passed += summary.get("passed", 0)
        result.failed += summary.get("failed", 0)
        result.skipped += summary.get("skipped", 0)
        for kind in ("passed_checks", "failed_checks", "skipped_checks"):
            for item in rep["results"].get(kind, []):
                resources.add(f"{item.get('file_abs_path')}:{item.get('resource')}")
                result.checks_run.append(item.get("check_id"))
        for item in rep["results"].get("failed_checks", []):
            failing[item["check_id"]] += 1
            result.failures.append(
                f"{item['check_id']} {item.get('resource')} in {item.get('file_abs_path')}: "
                f"{item.get('check_name')}"
            )
    result.resources = len(resources)
    result.by_check = dict(failing)
    result.checks_run = sorted(set(result.checks_run))
    if proc.returncode not in (0, 1) and not result.checks_run:
        raise UserError(f"checkov failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}")
    return result


def _sources(checks_dir: Path) -> str:
    return "\n".join(
        p.read_text(encoding="utf-8")
        for p in sorted(checks_dir.iterdir())
        if p.suffix in (".py", ".yaml", ".yml")
    )


def scan_copy(stack_json: Path, dest: Path) -> Path:
    """A copy of a synthesized stack without ``terraform.required_version`` (checkov#7454)."""
    data = json.loads(stack_json.read_text(encoding="utf-8"))
    data.get("terraform", {}).pop("required_version", None)
    atomic_write_json(dest / "main.tf.json", data)
    return dest


def check_terraform(
    paths: list[Path], name: str = "adhoc", environment: str | None = None
) -> PolicyResult:
    """Scan Terraform JSON files (or folders of them) with the Terraform checks."""
    settings = load_settings()
    work = cache_dir() / "infra" / "policy" / name
    shutil.rmtree(work, ignore_errors=True)
    targets: list[Path] = []
    for index, path in enumerate(paths):
        path = Path(path)
        files = sorted(path.glob("*.tf.json")) if path.is_dir() else [path]
        for j, file in enumerate(files):
            targets.append(scan_copy(file, work / f"{index:02d}-{j:02d}-{file.parent.name}"))
    return run_checkov(
        targets, "terraform_json", _repo(settings.policy.terraform_checks), work, environment
    )


def check_stacks(env_name: str, outdir: Path | None = None) -> PolicyResult:
    """Scan every synthesized stack of an environment (platform included)."""
    settings = load_settings()
    env = load_environment(env_name)
    outdir = outdir or settings.outdir_path
    stacks = [
        outdir / "stacks" / env.stack_name(kind) / "cdk.tf.json" for kind in settings.stack_order
    ]
    missing = [str(s) for s in stacks if not s.is_file()]
    if missing:
        raise UserError(f"not synthesized: {', '.join(missing)}; run `tuneops infra synth` first")
    result = check_terraform(stacks, name=env_name, environment=env_name)
    atomic_write_json(cache_dir() / "infra" / "policy" / f"{env_name}.json", result.as_dict())
    return result


def check_manifests(paths: list[str | Path]) -> PolicyResult:
    """Scan rendered Kubernetes manifests (files or folders of YAML) with the Kubernetes checks.

    The result's ``ok`` is the gate: ``False`` when any check fails. ``failures`` names each
    failing check, resource and file.
    """
    settings = load_settings()
    targets = [Path(p) for p in paths]
    absent = [str(p) for p in targets if not p.exists()]
    if absent:
        raise UserError(f"no such manifest file or folder: {', '.join(absent)}")
    work = cache_dir() / "infra" / "policy" / "manifests"
    work.mkdir(parents=True, exist_ok=True)
    return run_checkov(
        [t.resolve() for t in targets],
        "kubernetes",
        _repo(settings.policy.kubernetes_checks),
        work,
        only_custom=not settings.policy.kubernetes_builtin_checks,
    )
