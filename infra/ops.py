"""What the `tuneops infra` commands do: synth, policy, plan, apply, destroy and drift for one
environment, stack by stack in order: Terraform's progress as it runs (``infra.progress``),
then one summary line per stack. A state lock left held by a run that died is explained in one
line and released by ``tuneops infra unlock`` (``infra.locks``).

Planning a stack whose upstream stack has changes pending cannot give a true plan (it would
read outputs that do not exist yet), so such a stack is marked *deferred* at plan time and is
planned right before it is applied, after its upstream is in place. No ``-target`` anywhere.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from infra.config import Environment, InfraSettings
from infra.progress import make_view
from infra.terraform import (
    StackChanges,
    Terraform,
    aws_credentials_available,
    infra_cache,
    terraform_binary,
)
from tuneops.core.errors import MissingToolError, UserError
from tuneops.core.io import atomic_write_json

console = Console(highlight=False, soft_wrap=True)

PLATFORM_SKIPPED = (
    "platform: not planned in {env}: the kubernetes and helm providers are not available to it "
    "(synthesized and policy-checked only; set platform.plan in its environment file where "
    "they are)"
)


@dataclass
class StackResult:
    stack: str
    status: str  # planned | deferred | skipped | applied | destroyed | unchanged | drifted
    changes: StackChanges = field(default_factory=StackChanges)
    resources: int = 0
    note: str = ""

    def line(self) -> str:
        text = f"{self.stack:<9} {self.status:<9}"
        if self.status in ("planned", "drifted", "applied", "destroyed"):
            text += f" {self.changes}"
        if self.resources:
            text += f"; {self.resources} resources in state"
        if self.note:
            text += f" ({self.note})"
        return text


@dataclass
class EnvRun:
    env: str
    action: str
    stacks: list[StackResult] = field(default_factory=list)
    seconds: float = 0.0
    policy: dict | None = None

    def summary(self) -> str:
        add = sum(s.changes.add for s in self.stacks)
        change = sum(s.changes.change for s in self.stacks)
        destroy = sum(s.changes.destroy for s in self.stacks)
        return (
            f"{self.action} {self.env}: {len(self.stacks)} stacks, {add} to add, {change} to "
            f"change, {destroy} to destroy in {self.seconds:.1f} s"
        )


class Runner:
    """Drives one environment: synthesized stacks in ``outdir``, Terraform per stack. The
    environment and the settings are loaded once by the command and handed in."""

    def __init__(
        self,
        env: Environment,
        settings: InfraSettings,
        *,
        outdir: Path | None = None,
        quiet: bool = False,
    ) -> None:
        self.env = env
        self.settings = settings
        self.outdir = outdir or settings.outdir_path
        self.quiet = quiet
        # Terraform's progress: live lines on a terminal, a line per resource elsewhere.
        self.view = make_view(console, quiet=quiet)

    # -- helpers -------------------------------------------------------------------------
    def say(self, text: str) -> None:
        if not self.quiet:
            console.print(text)

    def order(self) -> list[str]:
        return list(self.settings.stack_order)

    def plannable(self, stack: str) -> bool:
        return stack != "platform" or self.env.platform.plan

    def synthesized(self, stack: str) -> bool:
        return (self.outdir / "stacks" / self.env.stack_name(stack) / "cdk.tf.json").is_file()

    def terraform(self, stack: str) -> Terraform:
        workdir = self.outdir / "stacks" / self.env.stack_name(stack)
        if not (workdir / "cdk.tf.json").is_file():
            raise UserError(f"{workdir} has no cdk.tf.json: run `tuneops infra synth` first")
        return Terraform(self.settings, self.env, stack, workdir, view=self.view)

    def synth(self) -> None:
        from infra.app import synth

        result = synth([self.env], self.settings, self.outdir)
        self.say(f"synth: {len(result.stacks[self.env.name])} stacks in {result.seconds:.1f} s")

    def policy(self) -> dict:
        from infra.policy import check_stacks

        result = check_stacks(self.env, self.settings, self.outdir)
        self.say(f"policy: {result.summary()}")
        if not result.ok:
            for failure in result.failures[:30]:
                self.say(f"  FAILED {failure}")
            raise UserError(f"policy gate failed for {self.env.name}: {result.summary()}")
        return result.as_dict()

    def preflight(self) -> None:
        """What every Terraform step needs: the binary, credentials, the state bucket."""
        terraform_binary(self.settings)
        if self.env.is_local:
            from infra.bootstrap import bootstrap_state_bucket
            from infra.local.moto import MotoService

            moto = MotoService(endpoint=self.env.local_endpoint, seed=self.settings.local.moto_seed)
            if not moto.healthy():
                moto.start()
                self.say(f"local: started moto at {moto.url}")
            bootstrap_state_bucket(self.env)
        elif not aws_credentials_available():
            raise MissingToolError(
                f"no AWS credentials for {self.env.name}: synth and policy passed; to plan, "
                f"set AWS_PROFILE (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) for account "
                f"{self.env.account_id}, e.g. `aws sso login --profile {self.env.name}`, and "
                "retry"
            )

    def run_stacks(
        self,
        action: str,
        step: Callable[[str, Terraform], StackResult],
        started: float,
        *,
        policy: dict | None = None,
        reverse: bool = False,
        explain_skip: bool = False,
        list_resources: bool = False,
    ) -> EnvRun:
        """Run ``step`` on every stack in order (``reverse`` for teardown), report each result
        (with the resources it changed if ``list_resources``) and record the run, timed from
        ``started``. A stack whose providers are not available is recorded as skipped;
        ``explain_skip`` also says why."""
        run = EnvRun(self.env.name, action, policy=policy)
        for stack in reversed(self.order()) if reverse else self.order():
            if not self.plannable(stack):
                if explain_skip:
                    self.say(PLATFORM_SKIPPED.format(env=self.env.name))
                run.stacks.append(StackResult(stack, "skipped", note="providers not available"))
                continue
            result = step(stack, self.terraform(stack))
            run.stacks.append(result)
            self.say(result.line())
            if list_resources:
                for resource in result.changes.resources:
                    self.say(f"  {resource}")
        run.seconds = time.perf_counter() - started
        return self.record(run)

    def confirm(self) -> None:
        if not self.env.is_prod or os.environ.get("AUTO_APPROVE") == "1":
            return
        import typer

        if not typer.confirm(f"apply to {self.env.name}? (AUTO_APPROVE=1 skips this)"):
            raise UserError(f"apply to {self.env.name} not confirmed; nothing was applied")

    def record(self, run: EnvRun) -> EnvRun:
        atomic_write_json(
            infra_cache() / "runs" / f"{run.env}-{run.action}.json",
            {
                "env": run.env,
                "action": run.action,
                "seconds": round(run.seconds, 1),
                "policy": run.policy,
                "stacks": [
                    {
                        "stack": s.stack,
                        "status": s.status,
                        "add": s.changes.add,
                        "change": s.changes.change,
                        "destroy": s.changes.destroy,
                        "resources": s.resources,
                        "note": s.note,
                    }
                    for s in run.stacks
                ],
            },
        )
        self.say(run.summary())
        return run

    # -- commands ------------------------------------------------------------------------
    def plan(self, *, synth: bool = True) -> EnvRun:
        started = time.perf_counter()
        if synth:
            self.synth()
        policy = self.policy()
        self.preflight()
        pending_upstream: str | None = None

        def plan_stack(stack: str, tf: Terraform) -> StackResult:
            nonlocal pending_upstream
            tf.discard_plan()
            tf.init()
            if pending_upstream:
                return StackResult(
                    stack, "deferred", note=f"planned at apply, after {pending_upstream}"
                )
            changes = tf.plan()
            if not changes.empty:
                pending_upstream = stack
            return StackResult(stack, "planned", changes)

        return self.run_stacks("plan", plan_stack, started, policy=policy, explain_skip=True)

    def apply(self) -> EnvRun:
        started = time.perf_counter()
        plan_dir = infra_cache() / "plans" / self.env.name
        if not any((plan_dir / f"{s}.tfplan").is_file() for s in self.order()):
            self.say(f"apply: no saved plans for {self.env.name}; planning first")
            self.plan()
        elif not all(self.synthesized(s) for s in self.order()):
            self.synth()
        self.confirm()
        self.preflight()
        upstream_changed = False

        def apply_stack(stack: str, tf: Terraform) -> StackResult:
            nonlocal upstream_changed
            if upstream_changed or not tf.plan_file.is_file():
                # Deferred at plan time, or its upstream just changed: plan it now.
                tf.init()
                changes = tf.plan()
            else:
                changes = StackChanges(**_counts(tf.plan_file.with_suffix(".json")))
            if changes.empty:
                tf.discard_plan()
                result = StackResult(stack, "unchanged")
            else:
                tf.apply_saved()
                upstream_changed = True
                result = StackResult(stack, "applied", changes)
            result.resources = len(tf.state_resources())
            return result

        return self.run_stacks("apply", apply_stack, started, explain_skip=True)

    def destroy(self, *, synth: bool = True) -> EnvRun:
        started = time.perf_counter()
        if synth:
            self.synth()
        self.confirm()
        self.preflight()

        def destroy_stack(stack: str, tf: Terraform) -> StackResult:
            tf.init()
            changes = tf.plan(destroy=True)
            if not changes.empty:
                tf.apply_saved()
            else:
                tf.discard_plan()
            return StackResult(stack, "destroyed", changes, len(tf.state_resources()))

        return self.run_stacks("destroy", destroy_stack, started, reverse=True)

    def drift(self, *, synth: bool = True) -> EnvRun:
        started = time.perf_counter()
        if synth:
            self.synth()
        self.preflight()

        def drift_stack(stack: str, tf: Terraform) -> StackResult:
            tf.init()
            changes = tf.drift()
            return StackResult(stack, "drifted" if not changes.empty else "unchanged", changes)

        run = self.run_stacks("drift", drift_stack, started, list_resources=True)
        drifted = [s for s in run.stacks if s.status == "drifted"]
        if drifted:
            names = "; ".join(
                f"{s.stack}: {', '.join(r.split(' ')[0] for r in s.changes.resources)}"
                for s in drifted
            )
            raise UserError(f"drift in {self.env.name}: {names}")
        return run


def _counts(plan_json: Path) -> dict:
    from infra.terraform import changes_from_plan_json

    changes = changes_from_plan_json(json.loads(plan_json.read_text()))
    return {
        "add": changes.add,
        "change": changes.change,
        "destroy": changes.destroy,
        "resources": changes.resources,
    }
