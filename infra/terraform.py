"""The Terraform driver: runs the real ``terraform`` binary in each synthesized stack directory.

Every run gets the project's CLI config (rendered from ``infra/terraform.rc`` with the provider
mirror of this machine), its own data directory under the cache (so ``cdktf.out`` stays a pure
synth output), and, in the local environment, moto's test credentials. ``plan`` and ``apply``
run with ``-json`` and hand each message to a view (``infra.progress``) as it comes; a failure
is one error made of Terraform's diagnostics, and a held state lock is one line (``infra.locks``).
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
from infra.locks import (
    ERRORED_STATE,
    LOCK_ERROR,
    LockInfo,
    StateLockedError,
    held_locks,
    keep_pushed_state,
    unlock_command,
)
from infra.progress import NullView, StackRun
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
    """terraform exited non-zero; the message carries its errors (or the end of its output)."""


class Terraform:
    """``terraform`` in one stack directory of one environment."""

    def __init__(
        self,
        settings: InfraSettings,
        env: Environment,
        stack: str,
        workdir: Path,
        view: NullView | None = None,
    ):
        self.settings = settings
        self.env = env
        self.stack = stack
        self.workdir = workdir
        self.binary = terraform_binary(settings)
        self.data_dir = infra_cache() / "tfdata" / env.stack_name(stack)
        self.plan_dir = infra_cache() / "plans" / env.name
        self.plan_file = self.plan_dir / f"{stack}.tfplan"
        self.rc = render_cli_config(settings)
        self.view = view or NullView()

    @property
    def stack_name(self) -> str:
        return self.env.stack_name(self.stack)

    @property
    def errored_state(self) -> Path:
        """Where Terraform writes the state it could not save to the backend."""
        return self.workdir / ERRORED_STATE

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
            self.raise_if_locked(output)
            tail = "\n".join(output.splitlines()[-25:])
            raise TerraformError(
                f"terraform {args[0]} failed in {self.stack_name} (exit {proc.returncode}):\n{tail}"
            )
        return proc

    def stream(self, action: str, *args: str, ok_codes: tuple[int, ...] = (0,)) -> StackRun:
        """``terraform <action> -json ...``, each message shown by the view as it comes;
        a failure raises one error made of Terraform's diagnostics."""
        run = StackRun(self.stack_name, action)
        proc = subprocess.Popen(
            [self.binary, action, "-json", *args],
            cwd=self.workdir,
            env=self.environ(),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.view.begin(run)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                message, what = run.feed(line)
                if message is not None:
                    self.view.update(run, message, what)
            code = proc.wait()
        except BaseException:
            # Ctrl-C reaches terraform too: let it stop cleanly (and release its lock).
            proc.wait()
            self.view.end(run, False)
            raise
        self.view.end(run, code in ok_codes)
        run.exit_code = code
        if code not in ok_codes:
            self.raise_failure(action, run, code)
        return run

    def raise_failure(self, action: str, run: StackRun, code: int) -> None:
        text = run.error_text()
        for diag in run.errors():
            if diag.summary == LOCK_ERROR:
                self.raise_if_locked(f"{LOCK_ERROR}\n{diag.detail}")
        message = f"terraform {action} failed in {self.stack_name} (exit {code}):\n{text}"
        if self.errored_state.is_file():
            message += (
                f"\nTerraform could not save its state (kept in {self.errored_state}) and its "
                f"state lock may still be held: once AWS answers again, run "
                f"`{unlock_command(self.env.name)}` to release the lock and push that state"
            )
        raise TerraformError(message)

    def raise_if_locked(self, output: str) -> None:
        """One line naming the lock's owner when the output says the state is locked."""
        if LOCK_ERROR in output:
            lock = LockInfo.from_text(output)
            if lock is not None:
                raise StateLockedError(self.env.name, self.stack_name, lock)

    def refuse_unsaved_state(self) -> None:
        """Planning or applying over state Terraform could not save would fork the state
        (and create again what that state holds): refuse, naming the lock the same run
        left held, if it did."""
        if not self.errored_state.is_file():
            return
        lock = held_locks(self.env, [self.stack]).get(self.stack)
        if lock is not None:
            raise StateLockedError(self.env.name, self.stack_name, lock, self.errored_state)
        raise UserError(
            f"{self.stack_name} has state Terraform could not save ({self.errored_state}): "
            f"push it with `{unlock_command(self.env.name)}` before planning or applying again"
        )

    def force_unlock(self, lock_id: str) -> None:
        """``terraform force-unlock``: Terraform checks that ``lock_id`` still holds it."""
        self.run("force-unlock", "-force", lock_id)

    def push_errored_state(self) -> Path:
        """``terraform state push errored.tfstate`` (refused by Terraform when the backend's
        state is newer or of another lineage); the pushed file moves into the cache."""
        self.run("state", "push", ERRORED_STATE)
        return keep_pushed_state(self.errored_state, self.stack_name)

    def lock_args(self) -> list[str]:
        return [f"-lock-timeout={self.settings.terraform.lock_timeout_s}s"]

    def init(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.run("init", "-input=false", "-no-color", "-reconfigure")

    def plan(self, *, destroy: bool = False, save: bool = True) -> StackChanges:
        self.refuse_unsaved_state()
        self.plan_dir.mkdir(parents=True, exist_ok=True)
        args = [
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
        self.stream("plan", *args, ok_codes=(0, 2))
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
            raise UserError(f"no saved plan for {self.stack_name}: run plan first")
        self.refuse_unsaved_state()
        self.stream(
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
        self.refuse_unsaved_state()
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
