"""Demo step: the local environment, applied for real against moto's server."""

from __future__ import annotations

from rich.console import Console

from tuneops.cli.demo.state import DemoState, LocalCloud

console = Console(highlight=False, soft_wrap=True)


def run(state: DemoState) -> DemoState:
    from infra.bootstrap import bootstrap_state_bucket
    from infra.config import load_environment, load_settings
    from infra.local.moto import MotoService
    from infra.ops import Runner
    from infra.policy import last_policy_summary

    env, settings = load_environment("local"), load_settings()
    runner = Runner(env, settings)
    moto = MotoService(endpoint=env.local_endpoint, seed=settings.local.moto_seed)
    status = moto.start()  # idempotent: a healthy server is left as it is
    console.print(status.line())
    bootstrap_state_bucket(env)

    result = runner.apply()  # plans first when no saved plan exists (make apply ENV=local)
    for stack in result.stacks:
        console.print(f"  {stack.stack:<9} {stack.status:<9} {stack.resources} resources")
    total = sum(s.resources for s in result.stacks)
    per_stack = ", ".join(f"{s.stack} {s.resources}" for s in result.stacks if s.resources)
    return state.with_report(
        f"infra: local environment on {env.local_endpoint}: {total} resources ({per_stack}); "
        f"policy {last_policy_summary(env)}",
        cloud=LocalCloud(
            endpoint=env.local_endpoint,
            region=env.region,
            artifacts_bucket=env.bucket_names()["artifacts"],
        ),
    )
