"""The policy gate over an environment's stacks: finds the synthesized Terraform JSON of every
stack (the platform stack included) and hands it to ``policies.gate.check_terraform``, with the
skips scoped to the environment. The summary of the last check of each environment is kept in
``<cache>/infra/policy/<env>.json``."""

from __future__ import annotations

from pathlib import Path

from infra.config import Environment, InfraSettings
from infra.terraform import infra_cache
from policies.gate import PolicyResult, check_terraform
from tuneops.core.errors import UserError
from tuneops.core.io import atomic_write_json


def stack_files(
    env: Environment, settings: InfraSettings, outdir: Path | None = None
) -> list[Path]:
    """The synthesized ``cdk.tf.json`` of every stack of ``env``, in stack order."""
    outdir = outdir or settings.outdir_path
    return [
        outdir / "stacks" / env.stack_name(kind) / "cdk.tf.json" for kind in settings.stack_order
    ]


def check_stacks(
    env: Environment, settings: InfraSettings, outdir: Path | None = None
) -> PolicyResult:
    """Scan every synthesized stack of ``env`` in ``outdir`` (default: the configured one)."""
    stacks = stack_files(env, settings, outdir)
    missing = [str(s) for s in stacks if not s.is_file()]
    if missing:
        raise UserError(f"not synthesized: {', '.join(missing)}; run `tuneops infra synth` first")
    result = check_terraform(stacks, name=env.name, environment=env.name)
    atomic_write_json(infra_cache() / "policy" / f"{env.name}.json", result.as_dict())
    return result


def last_policy_summary(env: Environment) -> str:
    """One line on the last policy check of ``env`` (``not run`` when there was none)."""
    import json

    path = infra_cache() / "policy" / f"{env.name}.json"
    if not path.is_file():
        return "not run"
    data = json.loads(path.read_text(encoding="utf-8"))
    return f"{data['passed']} passed, {data['failed']} failed, {data['skipped']} skipped"
