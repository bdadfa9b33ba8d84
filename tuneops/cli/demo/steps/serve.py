"""Demo step: serve the promoted champion and ask it three questions over the OpenAI API."""

from __future__ import annotations

import concurrent.futures
import time

from rich.console import Console
from rich.panel import Panel

from tuneops.cli.demo.state import DemoState

console = Console()

QUESTIONS = [
    "How do I roll back a Kubernetes Deployment to its previous revision?",
    "What does `terraform plan` do before `terraform apply`?",
    "How do I list the releases Helm has installed in every namespace?",
]


def pick_model(name: str, tracking_uri: str) -> tuple[str, str]:
    """The reference to serve and a note on where it came from.

    The champion when one is promoted, else the candidate (said so), else the embedded base
    model (said so) so the step still shows the server working.
    """
    from workloads.models.refs import DEFAULT_MODEL, registry_uri
    from workloads.models.registry import lookup_version

    for alias in ("champion", "candidate"):
        ref = registry_uri(name, alias=alias)
        version = lookup_version(ref, tracking_uri=tracking_uri)
        if version is None:
            continue
        note = f"{name} version {version.version} (@{alias})"
        if alias != "champion":
            note += ": no champion is promoted yet, so the candidate is served instead"
        return ref, note
    return (
        DEFAULT_MODEL,
        f"{name} is not registered yet, so the base model {DEFAULT_MODEL} is served",
    )


def _ask_all(base_url: str, token: str, name: str):
    """Ask every question at once: the server decodes the answers together in one batch."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key=token, max_retries=0)

    def ask(question: str):
        t0 = time.perf_counter()
        reply = client.chat.completions.create(
            model=name,
            messages=[{"role": "user", "content": question}],
            max_tokens=160,
            temperature=0,
        )
        return reply, time.perf_counter() - t0

    with concurrent.futures.ThreadPoolExecutor(len(QUESTIONS)) as pool:
        return list(pool.map(ask, QUESTIONS))


def run(state: DemoState) -> DemoState:
    from workloads.serve.process import ServerProcess

    name = state.model_name
    ref, note = pick_model(name, state.tracking)
    console.print(f"serving {note}")
    started = time.perf_counter()
    server = ServerProcess(ref, name=name, env={"MLFLOW_TRACKING_URI": state.tracking})
    with server:
        console.print(
            f"server ready at {server.openai_url} in {time.perf_counter() - started:.1f} s"
        )
        t0 = time.perf_counter()
        replies = _ask_all(server.openai_url, server.token, name)
        wall = time.perf_counter() - t0
    for question, (reply, _seconds) in zip(QUESTIONS, replies, strict=True):
        answer = reply.choices[0].message.content.strip()
        console.print(
            Panel(answer, title=question, subtitle=f"{reply.usage.completion_tokens} tokens")
        )
    console.print(f"asked {len(replies)} questions of {ref}; server stopped")
    return state.with_report(
        f"serve     {ref}: {len(replies)} answers over /openai/v1, "
        f"asked together, {wall:.1f} s in all; server stopped cleanly "
        f"(exit {server.proc.returncode})"
    )
