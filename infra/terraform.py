"""The Terraform driver: runs the real ``terraform`` binary in each synthesized stack directory.

Every run gets the project's CLI config (rendered from ``infra/terraform.rc`` with the provider
mirror of this machine), its own data directory under the cache (so ``cdktf.out`` stays a pure
synth output), and, in the local environment, moto's test credentials.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from infra.config import Environment, InfraSettings
from tuneops.core.errors import MissingToolError, UserError
from tuneops.core.io import atomic_write_text
from tuneops.core.paths import REPO_ROOT, cache_dir

RC_TEMPLATE = REPO_ROOT / "infra" / "terraform.rc"
LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
}


def infra_cache() -> Path:
    path = cache_dir() / "infra"
    path.mkdir(parents=True, exist_ok=True)
    return path


def plugin_mirror(settings: InfraSettings) -> Path | None:
    value = os.environ.get(settings.terraform.mirror_env)
    if value:
        path = Path(value)
        if not (path / "registry.terraform.io").is_dir():
            raise UserError(
                f"${settings.terraform.mirror_env}={value} is not a provider mirror "
                "(no registry.terraform.io folder in it)"
            )
        return path
    default = Path(settings.terraform.default_mirror)
    return default if (default / "registry.terraform.io").is_dir() else None


def render_cli_config(settings: InfraSettings) -> Path:
    """Write the CLI config for this machine and return its path."""
    text = RC_TEMPLATE.read_text(encoding="utf-8")
    mirror = plugin_mirror(settings)
    if mirror is None:
        # No mirror here: every provider comes from its registry.
        text = re.sub(
            r"provider_installation \{.*\n\}\n",
            "provider_installation {\n  direct {}\n}\n",
            text,
            flags=re.S,
        )
    else:
        text = re.sub(r'path\s*=\s*"[^"]*"', f'path    = "{mirror}"', text, count=1)
    plugin_cache = infra_cache() / "plugin-cache"
    plugin_cache.mkdir(parents=True, exist_ok=True)
    text = f'plugin_cache_dir = "{plugin_cache}"\n' + text
    return atomic_write_text(infra_cache() / "terraform.rc", text)


def terraform_binary(settings: InfraSettings) -> str:
    found = shutil.which(settings.terraform.binary)
    if not found:
        raise MissingToolError(
            f"terraform not found ({settings.terraform.binary!r} is not on PATH): install "
            "Terraform 1.11 or later from the HashiCorp releases page and retry"
        )
    return found


def aws_credentials_available() -> bool:
    import boto3

    try:
        return boto3.Session().get_credentials() is not None
    except Exception:
        return False


@dataclass
class StackChanges:
    add: int = 0
    change: int = 0
    destroy: int = 0
    resources: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.add or self.change or self.destroy)

    def __str__(self) -> str:
        return f"{self.add} to add, {self.change} to change, {self.destroy} to destroy"


def changes_from_plan_json(plan: dict) -> StackChanges:
    out = StackChanges()
    for rc in plan.get("resource_changes", []):
        actions = rc.get("change", {}).get("actions", [])
        if actions in (["no-op"], ["read"]):
            continue
        if "create" in actions:
            out.add += 1
        if "delete" in actions:
            out.destroy += 1
        if actions == ["update"]:
            out.change += 1
        out.resources.append(f"{rc['address']} ({'/'.join(actions)})")
    return out


class TerraformError(UserError):
    """terraform exited non-zero; the message carries the end of its output."""


class Terraform:
    """``terraform`` in one stack directory of one environment."""

    def __init__(self, settings: InfraSettings, env: Environment, stack: str, workdir: Path):
        self.settings = settings
        self.env = env
        self.stack = stack
        self.workdir = workdir
        self.binary = terraform_binary(settings)
        self.data_dir = infra_cache() / "tfdata" / env.stack_name(stack)
        self.plan_dir = infra_cache() / "plans" / env.name
        self.plan_file = self.plan_dir / f"{stack}.tfplan"
        self.rc = render_cli_config(settings)

    def environ(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            TF_CLI_CONFIG_FILE=str(self.rc),
            TF_DATA_DIR=str(self.data_dir),
            TF_IN_AUTOMATION="1",
            TF_INPUT="0",
        )
        if self.env.is_local:
            for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"):
                env.pop(var, None)
            env.update(LOCAL_CREDENTIALS)
            env["AWS_REGION"] = self.env.region
        return env

    @property
    def parallelism(self) -> int:
        if self.env.is_local:
            return self.settings.local.parallelism
        return self.settings.terraform.parallelism

    def run(
        self, *args: str, ok_codes: tuple[int, ...] = (0,), capture: bool = True
    ) -> subprocess.CompletedProcess:
        cmd = [self.binary, *args]
        proc = subprocess.run(
            cmd,
            cwd=self.workdir,
            env=self.environ(),
            text=True,
            capture_output=capture,
            check=False,
        )
        if proc.returncode not in ok_codes:
            output = ((proc.stdout or "") + (proc.stderr or "")).strip()
            tail = "\n".join(output.splitlines()[-25:])
            raise TerraformError(
                f"terraform {args[0]} failed in {self.env.stack_name(self.stack)} "
                f"(exit {proc.returncode}):\n{tail}"
            )
        return proc

    def lock_args(self) -> list[str]:
        return [f"-lock-timeout={self.settings.terraform.lock_timeout_s}s"]

    def init(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.run("init", "-input=false", "-no-color", "-reconfigure")

    def plan(self, *, destroy: bool = False, save: bool = True) -> StackChanges:
        self.plan_dir.mkdir(parents=True, exist_ok=True)
        args = [
            "plan",
            "-input=false",
            "-no-color",
            "-detailed-exitcode",
            f"-parallelism={self.parallelism}",
            *self.lock_args(),
        ]
        if destroy:
            args.append("-destroy")
        if save:
            args.append(f"-out={self.plan_file}")
        self.run(*args, ok_codes=(0, 2))
        if not save:
            return StackChanges()
        plan_json = self.show_plan_json()
        atomic_write_text(
            self.plan_file.with_suffix(".json"), json.dumps(plan_json, indent=1, sort_keys=True)
        )
        return changes_from_plan_json(plan_json)

    def show_plan_json(self) -> dict:
        proc = self.run("show", "-json", "-no-color", str(self.plan_file))
        return json.loads(proc.stdout)

    def apply_saved(self) -> None:
        if not self.plan_file.is_file():
            raise UserError(f"no saved plan for {self.env.stack_name(self.stack)}: run plan first")
        self.run(
            "apply",
            "-input=false",
            "-no-color",
            f"-parallelism={self.parallelism}",
            *self.lock_args(),
            str(self.plan_file),
        )
        self.discard_plan()

    def discard_plan(self) -> None:
        self.plan_file.unlink(missing_ok=True)
        self.plan_file.with_suffix(".json").unlink(missing_ok=True)

    def outputs(self) -> dict:
        proc = self.run("output", "-json", "-no-color")
        return {k: v.get("value") for k, v in json.loads(proc.stdout or "{}").items()}

    def state_resources(self) -> list[str]:
        proc = self.run("state", "list", ok_codes=(0, 1))
        if proc.returncode != 0:
            return []
        return [line for line in proc.stdout.splitlines() if line.strip()]

    def drift(self) -> StackChanges:
        """``plan -detailed-exitcode`` with a refresh: what changed behind Terraform's back."""
        self.plan_dir.mkdir(parents=True, exist_ok=True)
        drift_file = self.plan_dir / f"{self.stack}.drift.tfplan"
        proc = self.run(
            "plan",
            "-input=false",
            "-no-color",
            "-detailed-exitcode",
            f"-parallelism={self.parallelism}",
            *self.lock_args(),
            f"-out={drift_file}",
            ok_codes=(0, 2),
        )
        if proc.returncode == 0:
            drift_file.unlink(missing_ok=True)
            return StackChanges()
        shown = json.loads(self.run("show", "-json", "-no-color", str(drift_file)).stdout)
        drift_file.unlink(missing_ok=True)
        changes = changes_from_plan_json(shown)
        # Resources changed outside Terraform are listed separately by the plan.
        for item in shown.get("resource_drift", []):
            changes.resources.append(f"{item['address']} (changed outside terraform)")
        return changes
