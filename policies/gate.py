"""The policy gate: checkov, offline, with the project's custom checks and one skip list.

- ``check_terraform(paths)`` scans Terraform JSON files or folders of them (``infra`` hands it
  the synthesized stacks). checkov's ``terraform_json`` scanner crashes on cdktf output that
  sets ``required_version`` (bridgecrewio/checkov#7454), so it scans a copy of each file with
  that key removed (the copy is otherwise byte-for-byte the input).
- ``check_manifests(paths)`` scans rendered Kubernetes manifests; ``run_manifest_gate(paths)``
  does the same and raises one ``UserError`` listing the failures (the GitOps render calls it).

checkov runs from its own environment (``.venv-policy``, built by ``make policy-env`` from
requirements-policy.lock), so its exact pins stay out of the workloads' lock. Every check runs;
the skip list (``policies/skiplist.py``) then counts the failures it covers, per environment and
resource and each with its reason, as skipped: the result has the passed, failed and skipped
counts, the failures there would be with no skips at all, and the skips that covered nothing.
The settings are in ``configs/policies/default.yaml``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from policies.skiplist import Skip, dead_skips, judge, read_skips, skips_for
from tuneops.core.config import StrictModel, load_config
from tuneops.core.errors import MissingToolError, UserError
from tuneops.core.io import atomic_write_json
from tuneops.core.paths import CONFIG_DIR, REPO_ROOT, cache_dir

POLICY_CONFIG = CONFIG_DIR / "policies" / "default.yaml"
# Failures named in the one-line error of the manifest gate; the rest are counted.
SHOWN_FAILURES = 5


class PolicySettings(StrictModel):
    """``configs/policies/default.yaml``: where the checks and the skip list are."""

    terraform_checks: str = "policies/terraform"
    kubernetes_checks: str = "policies/kubernetes"
    skips: str = "policies/skips.yaml"
    kubernetes_builtin_checks: bool = False
    checkov_python: str = ".venv-policy/bin/python"


def load_policy_settings(
    path: str | Path | None = None, overrides: list[str] | None = None
) -> PolicySettings:
    return load_config(PolicySettings, path or POLICY_CONFIG, overrides=overrides)


@dataclass
class PolicyResult:
    framework: str
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    resources: int = 0
    failures: list[str] = field(default_factory=list)
    by_check: dict[str, int] = field(default_factory=dict)  # failing check id -> count
    skipped_by_check: dict[str, int] = field(default_factory=dict)  # skipped check id -> count
    dead_skips: list[str] = field(default_factory=list)  # skips that covered no failure
    checks_run: list[str] = field(default_factory=list)
    scanned: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0

    @property
    def failed_without_skips(self) -> int:
        """The failures there would be if nothing were skipped."""
        return self.failed + self.skipped

    def summary(self) -> str:
        dead = f"; dead skips: {', '.join(self.dead_skips)}" if self.dead_skips else ""
        return (
            f"{self.passed} passed, {self.failed} failed, {self.skipped} skipped "
            f"({self.failed_without_skips} failed with no skips) over {self.resources} resources "
            f"({self.framework}){dead}"
        )

    def as_dict(self) -> dict:
        return {
            "framework": self.framework,
            "passed": self.passed,
            "failed": self.failed,
            "skipped": self.skipped,
            "failed_without_skips": self.failed_without_skips,
            "skipped_by_check": self.skipped_by_check,
            "dead_skips": self.dead_skips,
            "resources": self.resources,
            "failures": self.failures,
        }


def _repo(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else REPO_ROOT / p


def _work_dir(name: str) -> Path:
    return cache_dir() / "policy" / name


def load_skips(
    framework: str, environment: str | None = None, settings: PolicySettings | None = None
) -> list[Skip]:
    """The skips that apply to a scan of ``framework`` in ``environment``."""
    skips = read_skips(_repo((settings or load_policy_settings()).skips))
    return skips_for(skips, framework, environment)


def checkov_python(settings: PolicySettings) -> str:
    """The interpreter of checkov's own environment, or one line on how to build it."""
    python = _repo(settings.checkov_python)
    if not python.is_file():
        raise MissingToolError(
            f"checkov's environment is missing ({settings.checkov_python}): run `make policy-env`"
        )
    return str(python)


# ----------------------------------------------------------------------------- checkov


def run_checkov(
    targets: list[Path],
    framework: str,
    checks_dir: Path,
    workdir: Path,
    *,
    skips: list[Skip],
    only_custom: bool = False,
    python: str,
) -> PolicyResult:
    """Run checkov (``python -m checkov.main``) over ``targets`` (files or folders), parse its
    JSON report and count the failures ``skips`` cover as skipped."""
    if not targets:
        raise UserError("nothing to scan: no files given to the policy gate")
    cmd = _checkov_command(python, framework, checks_dir, workdir, only_custom)
    for target in targets:
        cmd += ["--directory" if target.is_dir() else "--file", str(target)]
    report_file = workdir / "report" / "results_json.json"
    report_file.unlink(missing_ok=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, check=False)
    result = _parse_reports(_read_report(report_file, proc), framework, targets, skips)
    if proc.returncode not in (0, 1) and not result.checks_run:
        raise UserError(f"checkov failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}")
    return result


def _checkov_command(
    python: str, framework: str, checks_dir: Path, workdir: Path, only_custom: bool
) -> list[str]:
    cmd = [
        python,
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
        cmd += ["--check", ",".join(_custom_check_ids(checks_dir))]
    return cmd


def _custom_check_ids(checks_dir: Path) -> list[str]:
    """The ids of the project's checks in ``checks_dir`` (Python and YAML checks)."""
    sources = "\n".join(
        p.read_text(encoding="utf-8")
        for p in sorted(checks_dir.iterdir())
        if p.suffix in (".py", ".yaml", ".yml")
    )
    return sorted(
        set(re.findall(r'id="(CKV2?_TUNEOPS_[A-Z0-9_]+)"', sources))
        | set(re.findall(r"id: (CKV2?_TUNEOPS_[A-Z0-9_]+)", sources))
    )


def _read_report(report_file: Path, proc: subprocess.CompletedProcess) -> list:
    try:
        report = json.loads(report_file.read_text()) if report_file.is_file() else []
    except json.JSONDecodeError as exc:
        raise UserError(
            f"checkov gave no JSON report (exit {proc.returncode}): "
            f"{(proc.stderr or proc.stdout).strip()[-800:]}"
        ) from exc
    return report if isinstance(report, list) else [report]


def _parse_reports(
    reports: list, framework: str, targets: list[Path], skips: list[Skip]
) -> PolicyResult:
    result = PolicyResult(framework=framework, scanned=[str(t) for t in targets])
    resources: set[str] = set()
    failed_items: list[dict] = []
    for rep in reports:
        if not isinstance(rep, dict) or "results" not in rep:
            continue
        results = rep["results"]
        result.passed += len(results.get("passed_checks", []))
        result.skipped += len(results.get("skipped_checks", []))  # inline suppressions
        failed_items += results.get("failed_checks", [])
        for kind in ("passed_checks", "failed_checks", "skipped_checks"):
            for item in results.get(kind, []):
                resources.add(f"{item.get('file_abs_path')}:{item.get('resource')}")
                result.checks_run.append(item.get("check_id"))
    verdicts = judge([(i["check_id"], str(i.get("resource"))) for i in failed_items], skips)
    failing: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    for item, verdict in zip(failed_items, verdicts, strict=True):
        if verdict.skip is not None:
            skipped[item["check_id"]] += 1
            continue
        failing[item["check_id"]] += 1
        result.failures.append(
            f"{item['check_id']} {item.get('resource')} in {item.get('file_abs_path')}: "
            f"{item.get('check_name')}"
        )
    result.failed = sum(failing.values())
    result.skipped += sum(skipped.values())
    result.resources = len(resources)
    result.by_check = dict(failing)
    result.skipped_by_check = dict(skipped)
    result.dead_skips = dead_skips(verdicts, skips)
    result.checks_run = sorted(set(result.checks_run))
    return result


# ----------------------------------------------------------------------------- the gates


def scan_copy(stack_json: Path, dest: Path) -> Path:
    """A copy of a Terraform JSON file without ``terraform.required_version`` (checkov#7454)."""
    data = json.loads(stack_json.read_text(encoding="utf-8"))
    data.get("terraform", {}).pop("required_version", None)
    atomic_write_json(dest / "main.tf.json", data)
    return dest


def check_terraform(
    paths: Sequence[Path],
    name: str = "adhoc",
    environment: str | None = None,
    settings: PolicySettings | None = None,
) -> PolicyResult:
    """Scan Terraform JSON files (or folders of them) with the Terraform checks; ``environment``
    selects the skips scoped to it, ``name`` the working folder of the scan."""
    settings = settings or load_policy_settings()
    work = _work_dir(name)
    shutil.rmtree(work, ignore_errors=True)
    targets: list[Path] = []
    for index, path in enumerate(paths):
        path = Path(path)
        files = sorted(path.glob("*.tf.json")) if path.is_dir() else [path]
        for j, file in enumerate(files):
            targets.append(scan_copy(file, work / f"{index:02d}-{j:02d}-{file.parent.name}"))
    return run_checkov(
        targets,
        "terraform_json",
        _repo(settings.terraform_checks),
        work,
        skips=load_skips("terraform_json", environment, settings),
        python=checkov_python(settings),
    )


def check_manifests(
    paths: Sequence[str | Path], settings: PolicySettings | None = None
) -> PolicyResult:
    """Scan rendered Kubernetes manifests (files or folders of YAML) with the Kubernetes checks.

    The result's ``ok`` is the gate: ``False`` when any check fails. ``failures`` names each
    failing check, resource and file.
    """
    settings = settings or load_policy_settings()
    targets = [Path(p) for p in paths]
    absent = [str(p) for p in targets if not p.exists()]
    if absent:
        raise UserError(f"no such manifest file or folder: {', '.join(absent)}")
    work = _work_dir("manifests")
    work.mkdir(parents=True, exist_ok=True)
    return run_checkov(
        [t.resolve() for t in targets],
        "kubernetes",
        _repo(settings.kubernetes_checks),
        work,
        skips=load_skips("kubernetes", settings=settings),
        only_custom=not settings.kubernetes_builtin_checks,
        python=checkov_python(settings),
    )


def run_manifest_gate(paths: Sequence[str | Path]) -> str:
    """Gate rendered manifests: one ``UserError`` naming the failures when any check fails,
    otherwise the one-line summary of what ran."""
    result = check_manifests(paths)
    if not result.ok:
        failures = result.failures or [result.summary()]
        shown = "; ".join(failures[:SHOWN_FAILURES])
        more = (
            f" (+{len(failures) - SHOWN_FAILURES} more)" if len(failures) > SHOWN_FAILURES else ""
        )
        raise UserError(f"policy gate refused the manifests: {shown}{more}")
    return result.summary()
