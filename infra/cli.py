"""Commands of this area; wired into the `tuneops` CLI by `tuneops.cli`.

Three groups: ``tuneops infra ...`` (cdktf + Terraform + policy gate), ``tuneops local ...``
(the local platform's services) and ``tuneops platform ...`` (Helm releases on a live cluster).
"""

from __future__ import annotations

from pathlib import Path

import typer

from infra.local import ServiceName
from tuneops.core.errors import UserError

app = typer.Typer(no_args_is_help=True)
infra_app = typer.Typer(no_args_is_help=True, help="Provision environments with cdktf + Terraform.")
local_app = typer.Typer(no_args_is_help=True, help="Run the local platform (moto's AWS, ...).")
platform_app = typer.Typer(no_args_is_help=True, help="Inspect and roll back platform releases.")
app.add_typer(infra_app, name="infra")
app.add_typer(local_app, name="local")
app.add_typer(platform_app, name="platform")

ENV_OPT = typer.Option("local", "--env", "-e", help="environment (configs/infra/environments/)")
SET_OPT = typer.Option(
    None, "--set", help="override a value of the environment file for this run: key.sub=value"
)
OUTDIR_OPT = typer.Option(None, "--output", "-o", help="cdktf output folder (default from config)")


def _load(env: str, overrides: list[str] | None = None):
    """The settings and the environment of one command, each loaded once, overrides applied."""
    from infra.config import load_environment, load_settings

    return load_settings(), load_environment(env, overrides)


def _runner(env: str, overrides: list[str] | None, outdir: Path | None):
    from infra.ops import Runner

    settings, environment = _load(env, overrides)
    return Runner(environment, settings, outdir=outdir)


# ----------------------------------------------------------------------------- infra


@infra_app.command("synth")
def synth_cmd(
    env: str | None = typer.Option(None, "--env", "-e", help="one environment; all when omitted"),
    overrides: list[str] | None = SET_OPT,
    outdir: Path | None = OUTDIR_OPT,
) -> None:
    """Synthesize the stacks of one environment, or of all of them in one process."""
    from infra.app import synth
    from infra.config import load_environment, load_settings
    from tuneops.core.environments import environment_names

    settings = load_settings()
    if env:
        envs = [load_environment(env, overrides)]
    else:
        envs = [load_environment(name) for name in environment_names()]
    with _status(f"synthesizing {', '.join(e.name for e in envs)}"):
        result = synth(envs, settings, outdir)
    total = sum(len(s) for s in result.stacks.values())
    typer.echo(
        f"synth: {total} stacks of {len(envs)} environment(s) in {result.seconds:.1f} s "
        f"-> {result.outdir}/stacks/"
    )


@infra_app.command("policy")
def policy_cmd(
    env: str = ENV_OPT,
    overrides: list[str] | None = SET_OPT,
    outdir: Path | None = OUTDIR_OPT,
    synth: bool = typer.Option(True, help="synthesize first"),
) -> None:
    """Run the checkov policy gate over the synthesized stacks of an environment."""
    runner = _runner(env, overrides, outdir)
    if synth:
        with _status(f"synthesizing {env}"):
            runner.synth()
    with _status(f"checking {env}"):
        runner.policy()


@infra_app.command("plan")
def plan_cmd(
    env: str = ENV_OPT, overrides: list[str] | None = SET_OPT, outdir: Path | None = OUTDIR_OPT
) -> None:
    """Synth, policy, then terraform init and plan for each stack in order (plans are saved)."""
    _runner(env, overrides, outdir).plan()


@infra_app.command("apply")
def apply_cmd(
    env: str = ENV_OPT, overrides: list[str] | None = SET_OPT, outdir: Path | None = OUTDIR_OPT
) -> None:
    """Apply the saved plans in order (prod asks for confirmation unless AUTO_APPROVE=1)."""
    _runner(env, overrides, outdir).apply()


@infra_app.command("destroy")
def destroy_cmd(
    env: str = ENV_OPT, overrides: list[str] | None = SET_OPT, outdir: Path | None = OUTDIR_OPT
) -> None:
    """Destroy every stack of an environment, in reverse order."""
    _runner(env, overrides, outdir).destroy()


@infra_app.command("drift")
def drift_cmd(
    env: str = ENV_OPT, overrides: list[str] | None = SET_OPT, outdir: Path | None = OUTDIR_OPT
) -> None:
    """Plan with -detailed-exitcode per stack; any change fails and names the resources."""
    _runner(env, overrides, outdir).drift()


@infra_app.command("unlock")
def unlock_cmd(
    positional: str | None = typer.Argument(None, hidden=True),
    env: str = ENV_OPT,
    overrides: list[str] | None = SET_OPT,
    outdir: Path | None = OUTDIR_OPT,
    yes: bool = typer.Option(
        False, "--yes", "-y", help="release without asking (you checked the owner yourself)"
    ),
) -> None:
    """Release the state locks a dead run left held, after showing their owner, and push the
    state Terraform could not save."""
    import sys

    from infra.locks import unlock
    from tuneops.core.environments import refuse_positional_env

    refuse_positional_env(positional, "infra unlock")
    runner = _runner(env, overrides, outdir)
    unlock(runner, yes=yes, interactive=sys.stdin.isatty(), ask=typer.confirm)


@infra_app.command("check-manifests")
def check_manifests_cmd(
    paths: list[Path] = typer.Argument(..., help="manifest files or folders (e.g. gitops/dev)"),
) -> None:
    """Run the Kubernetes policy gate over rendered manifests."""
    from policies.gate import check_manifests

    with _status("checking manifests"):
        result = check_manifests(paths)
    for failure in result.failures:
        typer.echo(f"  FAILED {failure}")
    typer.echo(f"policy: {result.summary()}")
    if not result.ok:
        raise UserError(f"manifest policy gate failed: {result.failed} failed checks")


# ----------------------------------------------------------------------------- local

LOCAL_SET_OPT = typer.Option(
    None,
    "--set",
    help="override a value for this run: key.sub=value of the local environment file, "
    "platform.key.sub=value of configs/deploy/platform/local.yaml (ports, bucket, ...)",
)


def _local_services(overrides: list[str] | None = None):
    """The local environment (loaded once, with overrides) and its services in start order."""
    from infra.local.postgres import load_platform_settings
    from infra.local.registry import build_services, split_overrides

    env_sets, platform_sets = split_overrides(overrides)
    settings, env = _load("local", env_sets)
    return env, build_services(env, settings, load_platform_settings(platform_sets))


@local_app.command("up")
def local_up(
    overrides: list[str] | None = LOCAL_SET_OPT,
    only: list[ServiceName] | None = typer.Option(
        None, "--only", help="start only this service (repeatable)"
    ),
) -> None:
    """Start the local platform's services (idempotent) and create the local state bucket.
    A service that is down or unhealthy (killed, crashed, its store gone) is started again."""
    from infra.bootstrap import bootstrap_state_bucket
    from infra.local.moto import MotoService

    env, services = _local_services(overrides)
    chosen = {name.value for name in only or []}
    for name, service in services.items():
        if chosen and name not in chosen:
            continue
        with _status(f"starting {name}"):
            status = service.start()
        typer.echo(status.line())
        if isinstance(service, MotoService):
            result = bootstrap_state_bucket(env)
            typer.echo(f"{'':<14} state bucket {result.bucket} ready")
    typer.echo(f"local: {len(services)} service(s) known, logs under {_local_root()}")


@local_app.command("down")
def local_down(
    overrides: list[str] | None = LOCAL_SET_OPT,
    reset: bool = typer.Option(
        False, "--reset/--no-reset", help="also forget moto's recorded state"
    ),
) -> None:
    """Stop the local platform's services (their data stays under .cache/local/)."""
    from infra.local.moto import MotoService

    _, services = _local_services(overrides)
    stopped = 0
    for service in reversed(list(services.values())):
        stopped += bool(service.stop())
        if reset and isinstance(service, MotoService):
            service.reset()
    typer.echo(f"local: stopped {stopped} service(s)" + ("; moto state reset" if reset else ""))


@local_app.command("status")
def local_status(overrides: list[str] | None = LOCAL_SET_OPT) -> None:
    """Show what the local platform runs, where, and its health. Exits 1 when a service is
    down (its process killed or crashed) or unhealthy; `tuneops local up` brings it back."""
    _, services = _local_services(overrides)
    statuses = [service.status() for service in services.values()]
    for status in statuses:
        typer.echo(status.line())
    healthy = sum(status.healthy for status in statuses)
    summary = f"local: {healthy}/{len(statuses)} service(s) healthy"
    failed = [status for status in statuses if status.failed]
    if not failed:
        typer.echo(summary)
        return
    states = ", ".join(f"{s.name} {'unhealthy' if s.running else 'down'}" for s in failed)
    typer.echo(f"{summary}; {states}: `tuneops local up` brings them back")
    raise typer.Exit(1)


@local_app.command("logs")
def local_logs(
    name: ServiceName = typer.Argument(..., help="the service"),
    lines: int = typer.Option(50, "--lines", "-n", help="how many lines from the end"),
) -> None:
    """Print the end of a service's log."""
    _, services = _local_services()
    typer.echo(services[name.value].logs(lines))


def _local_root() -> Path:
    from infra.local.service import local_root

    return local_root()


# ----------------------------------------------------------------------------- platform

PLATFORM_ENV_OPT = typer.Option(
    None, "--env", "-e", help="environment (configs/infra/environments/); required"
)
CONTEXT_OPT = typer.Option(None, help="kubeconfig context (default: current)")
OLD_ENV_ARG = typer.Argument(None, hidden=True)


def _platform_env(env: str | None, positional: str | None, command: str):
    """The environment of a `tuneops platform` command; the old positional spelling is refused."""
    from infra.config import load_environment
    from tuneops.core.environments import refuse_positional_env

    refuse_positional_env(positional, command)
    if env is None:
        raise UserError(f"name the environment: `tuneops {command} --env ENV`")
    return load_environment(env)


@platform_app.command("status")
def platform_status(
    positional: str | None = OLD_ENV_ARG,
    env: str | None = PLATFORM_ENV_OPT,
    context: str | None = CONTEXT_OPT,
) -> None:
    """Deployed revision, status and chart version of every catalog release."""
    from infra.helm import status

    for line in status(_platform_env(env, positional, "platform status"), context):
        typer.echo(line)


@platform_app.command("diff")
def platform_diff(
    positional: str | None = OLD_ENV_ARG,
    env: str | None = PLATFORM_ENV_OPT,
    context: str | None = CONTEXT_OPT,
) -> None:
    """Compare deployed chart versions and values with the catalog; non-zero when they differ."""
    from infra.helm import diff

    environment = _platform_env(env, positional, "platform diff")
    lines, differs = diff(environment, context)
    for line in lines:
        typer.echo(line)
    if differs:
        raise UserError(f"{differs} release(s) of {environment.name} differ from the catalog")


@platform_app.command("rollback")
def platform_rollback(
    positional: str | None = OLD_ENV_ARG,
    env: str | None = PLATFORM_ENV_OPT,
    release: str = typer.Option(..., "--release", "-r", help="release name from the catalog"),
    revision: int | None = typer.Option(None, help="revision (default: the previous one)"),
    context: str | None = CONTEXT_OPT,
) -> None:
    """Roll one release back to an earlier revision."""
    from infra.helm import rollback

    environment = _platform_env(env, positional, "platform rollback")
    typer.echo(rollback(environment, release, revision, context))


def _status(text: str):
    from rich.console import Console

    return Console(stderr=True).status(text)
