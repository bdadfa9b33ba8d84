"""Demo step: serve the promoted champion and ask it three questions over the OpenAI API."""

from __future__ import annotations

import concurrent.futures
import time

from rich.console import Console
from rich.panel import Panel

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
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=tracking_uri)
    for alias in ("champion", "candidate"):
        try:
            version = client.get_model_version_by_alias(name, alias)
        except MlflowException:
            continue
        note = f"{name} version {version.version} (@{alias})"
        if alias != "champion":
            note += ": no champion is promoted yet, so the candidate is served instead"
        return f"models:/{name}@{alias}", note
    from workloads.models import DEFAULT_MODEL

    return (
        DEFAULT_MODEL,
        f"{name} is not registered yet, so the base model {DEFAULT_MODEL} is served",
    )


def run(ctx) -> None:
    import openai

    from tuneops.core.paths import default_tracking_uri
    from workloads.serve.process import ServerProcess

    name = ctx.get("registered_model") or "cloudops-assistant"
    tracking_uri = ctx.get("tracking_uri") or default_tracking_uri()
    ref, note = pick_model(name, tracking_uri)
    console.print(f"serving {note}")
    started = time.perf_counter()
    server = ServerProcess(ref, name=name, env={"MLFLOW_TRACKING_URI": tracking_uri})
    answers = []
    with server:
        console.print(
            f"server ready at {server.openai_url} in {time.perf_counter() - started:.1f} s"
        )
        client = openai.OpenAI(base_url=server.openai_url, api_key="demo", max_retries=0)

        def ask(question: str):
            t0 = time.perf_counter()
            reply = client.chat.completions.create(
                model=name,
                messages=[{"role": "user", "content": question}],
                max_tokens=160,
                temperature=0,
            )
            return reply, time.perf_counter() - t0

        # Asked at once: the server decodes the three answers together in one batch.
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(len(QUESTIONS)) as pool:
            replies = list(pool.map(ask, QUESTIONS))
        wall = time.perf_counter() - t0
        for question, (reply, seconds) in zip(QUESTIONS, replies, strict=True):
            answer = reply.choices[0].message.content.strip()
            answers.append({"question": question, "answer": answer, "seconds": seconds})
            console.print(
                Panel(answer, title=question, subtitle=f"{reply.usage.completion_tokens} tokens")
            )
    ctx["serve_answers"] = answers
    ctx["serve_model_ref"] = ref
    ctx.report.append(
        f"serve     {ref}: {len(answers)} answers over /openai/v1, "
        f"asked together, {wall:.1f} s in all; server stopped cleanly "
        f"(exit {server.proc.returncode})"
    )
    console.print(f"asked {len(answers)} questions of {ref}; server stopped")
