"""Demo steps: the local environment, applied for real against moto's server, in the background.

``make apply ENV=local`` takes minutes of Terraform against moto and leaves most of the CPU
idle, and the fine-tune needs nothing it makes (the MLflow run is written afterwards, see
``workloads/train/track_later.py``). So ``start`` brings up moto and the state bucket and
starts the apply as a process of its own (its output in a log file), the fine-tune runs
meanwhile, and ``finish`` waits for the apply and reports it. The base model's benchmark
answers are computed meanwhile too (``background.base_answers_job``), then its development
answers. All of it starts before the dataset step, which keeps only one core busy. (The
fine-tune's embedded model converted on a thread meanwhile made that step 4.9 -> 10.4 s: the
two held each other's GIL. The fine-tune converts it.)
"""

from __future__ import annotations

import sys

from rich.console import Console

from tuneops.cli.demo.background import BackgroundJob, base_answers_job, base_dev_answers_job
from tuneops.cli.demo.state import DemoState, LocalCloud
from tuneops.core.errors import UserError
from tuneops.core.paths import cache_dir

console = Console(highlight=False, soft_wrap=True)

APPLY = "make apply ENV=local"
PLATFORM = "local platform start"


def apply_job() -> BackgroundJob:
    """``tuneops infra apply --env local``, what ``make apply ENV=local`` runs."""
    command = [sys.executable, "-m", "tuneops.cli", "infra", "apply", "--env", "local"]
    return BackgroundJob(APPLY, command, cache_dir() / "demo" / "infra-apply.log", niceness=0)


def platform_job() -> BackgroundJob:
    """``tuneops local up`` of PostgreSQL and the MLflow server, which stores its artifacts in
    the bucket the apply creates: started when the apply has ended well. The platform step
    then finds both healthy (starting them is idempotent) instead of waiting for them."""
    command = [sys.executable, "-m", "tuneops.cli", "local", "up"]
    command += ["--only", "postgres", "--only", "mlflow"]
    return BackgroundJob(PLATFORM, command, cache_dir() / "demo" / "platform-up.log", niceness=0)


def _base_eval_setup(state: DemoState) -> tuple[str, tuple[str, ...]]:
    """The base model's reference and the evaluation overrides, as the evaluate step has them."""
    from workloads.evaluate.config import load_eval_config
    from workloads.models.refs import DEFAULT_MODEL

    overrides = ("splits=[benchmark]", *state.overrides.eval)
    base = load_eval_config(overrides=list(overrides)).baselines.get("base", DEFAULT_MODEL)
    return base, overrides


def dev_questions(state: DemoState) -> str | None:
    """The fine-tune's development questions (``train.eval.recall_questions``), if any."""
    from workloads.train.config import load_train_config

    return load_train_config(
        env="local", overrides=list(state.overrides.train)
    ).eval.recall_questions


def start_base_answers(state: DemoState) -> tuple[BackgroundJob, BackgroundJob | None]:
    """The base model's benchmark answers, on the core the fine-tune leaves free while the
    infrastructure applies (the evaluate step waits for them), then its answers to the
    fine-tune's development questions (the last step waits for those)."""
    setup = _base_eval_setup(state)
    job = base_answers_job(*setup)
    questions = dev_questions(state)
    dev = base_dev_answers_job(*setup, questions) if questions else None
    job.after = dev
    job.start()
    then = f", then the {dev.title}" if dev else ""
    console.print(f"computing the {job.title}{then} meanwhile (log: {job.log})")
    return job, dev


def start(state: DemoState) -> DemoState:
    from infra.bootstrap import bootstrap_state_bucket
    from infra.config import load_environment, load_settings
    from infra.local.moto import MotoService

    env, settings = load_environment("local"), load_settings()
    moto = MotoService(endpoint=env.local_endpoint, seed=settings.local.moto_seed)
    console.print(moto.start().line())  # idempotent: a healthy server is left as it is
    bootstrap_state_bucket(env)
    platform = platform_job()
    job = apply_job()
    job.after = platform
    job.start()
    console.print(f"{APPLY} runs in the background (log: {job.log}), then the {PLATFORM}")
    answers, dev = (
        (state.base_answers, state.base_dev_answers)
        if state.base_answers
        else start_base_answers(state)
    )
    return state.with_report(
        infra_apply=job,
        platform_start=platform,
        base_answers=answers,
        base_dev_answers=dev,
        cloud=LocalCloud(
            endpoint=env.local_endpoint,
            region=env.region,
            artifacts_bucket=env.bucket_names()["artifacts"],
        ),
    )


def _summary(job: BackgroundJob) -> str:
    """The apply's own summary line (``apply local: N stacks, ...``) from its log."""
    lines = job.log.read_text(encoding="utf-8", errors="replace").splitlines()
    found = [line.strip() for line in lines if line.strip().startswith("apply local:")]
    return found[-1] if found else f"see {job.log}"


def finish(state: DemoState) -> DemoState:
    from infra.config import load_environment
    from infra.policy import last_policy_summary

    job = state.infra_apply
    if job is None:
        raise UserError("the local infrastructure was not started (the start step does it)")
    if job.running():
        console.print(f"waiting for {APPLY} (log: {job.log})")
    if job.wait() != 0:
        tail = "\n".join(job.log.read_text(errors="replace").splitlines()[-15:])
        raise UserError(f"{APPLY} failed (exit {job.returncode}); its log {job.log} ends:\n{tail}")
    summary = _summary(job)
    console.print(f"{summary} ({job.seconds:.0f} s in the background)")
    env = load_environment("local")
    return state.with_report(
        f"infra: local environment on {env.local_endpoint}: {summary}, {job.seconds:.0f} s in "
        f"the background; policy {last_policy_summary(env)}"
    )
