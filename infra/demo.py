"""Demo step: the local environment, applied for real against moto's server."""

from __future__ import annotations

from rich.console import Console

console = Console(highlight=False, soft_wrap=True)


def run(ctx) -> None:
    from infra.bootstrap import bootstrap_state_bucket
    from infra.local.moto import MotoService
    from infra.ops import Runner

    runner = Runner("local")
    env = runner.env
    moto = MotoService(endpoint=env.local_endpoint)
    status = moto.start()  # idempotent: a healthy server is left as it is
    console.print(status.line())
    bootstrap_state_bucket(env)

    result = runner.apply()  # plans first when no saved plan exists (make apply ENV=local)
    plan = _last_plan_policy(env.name)
    for stack in result.stacks:
        console.print(f"  {stack.stack:<9} {stack.status:<9} {stack.resources} resources")
    total = sum(s.resources for s in result.stacks)

    ctx["local_endpoint"] = env.local_endpoint
    ctx["aws_region"] = env.region
    ctx["buckets"] = env.bucket_names()
    ctx["state_bucket"] = env.state.bucket
    per_stack = ", ".join(f"{s.stack} {s.resources}" for s in result.stacks if s.resources)
    ctx.report.append(
        f"infra: local environment on {env.local_endpoint}: {total} resources ({per_stack}); "
        f"policy {plan}"
    )


def _last_plan_policy(env: str) -> str:
    import json

    from infra.terraform import infra_cache

    path = infra_cache() / "policy" / f"{env}.json"
    if not path.is_file():
        return "not run"
    data = json.loads(path.read_text())
    return f"{data['passed']} passed, {data['failed']} failed, {data['skipped']} skipped"
