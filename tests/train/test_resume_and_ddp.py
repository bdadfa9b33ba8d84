"""Runs as a user starts them (`tuneops train`, `torchrun ... tuneops train`), on the tiny model:
resume after SIGKILL reaches the same result as an uninterrupted run, and two DDP processes on
CPU stay in lockstep with only rank 0 logging and saving."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TUNEOPS = [sys.executable, "-m", "tuneops.cli"]


def _args(model: Path, snapshot: Path, out: Path, *extra: str) -> list[str]:
    sets = [
        f"base_model={model}",
        f"tracking.uri=sqlite:///{out.parent / 'mlflow.db'}",
        "data.max_length=128",
        "data.max_eval_examples=4",
        "optim.batch_size=1",
        "optim.max_steps=40",
        "checkpoint.every_steps=5",
        "checkpoint.keep=10",
        "merge=false",
        "tracking.log_model=false",
        *extra,
    ]
    args = ["train", "--dataset", str(snapshot), "--output", str(out)]
    for item in sets:
        args += ["--set", item]
    return args


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["TUNEOPS_CACHE_DIR"] = str(tmp_path / "cache")
    env.pop("MLFLOW_TRACKING_URI", None)
    env["OMP_NUM_THREADS"] = "1"
    return env


def _result(out: Path) -> dict:
    return json.loads((out / "result.json").read_text())


def _kill_inside_a_checkpoint_write(
    proc: subprocess.Popen, ckpts: Path, first: int
) -> tuple[Path, list[str]]:
    """SIGKILL ``proc`` while the Trainer writes a checkpoint (``first`` or a later one): once
    the first file of its folder (the adapter weights) appears, the process is stopped
    (SIGSTOP) and killed if the completion marker is not there yet; otherwise it goes on
    (SIGCONT) to the next save. Returns the half-written folder and the files it held."""
    step, deadline = first, time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        target = ckpts / f"checkpoint-{step}"
        if not (target / "adapter_model.safetensors").exists():
            time.sleep(0.001)
            continue
        proc.send_signal(signal.SIGSTOP)
        if (target / "tuneops-complete.json").exists():  # the write ended first: the next one
            proc.send_signal(signal.SIGCONT)
            step += 5
            continue
        files = sorted(str(p.relative_to(target)) for p in target.rglob("*"))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return target, files
    proc.kill()
    proc.wait()
    raise AssertionError(f"no checkpoint write from checkpoint-{first} on could be caught")


@pytest.mark.e2e
def test_resume_after_sigkill_matches_an_uninterrupted_run(tiny_model_dir, snapshot_dir, tmp_path):
    env = _env(tmp_path)
    straight = tmp_path / "straight"
    subprocess.run([*TUNEOPS, *_args(tiny_model_dir, snapshot_dir, straight)], env=env, check=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [*TUNEOPS, *_args(tiny_model_dir, snapshot_dir, killed)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    half, files = _kill_inside_a_checkpoint_write(proc, killed / "checkpoints", first=15)
    assert proc.returncode == -signal.SIGKILL
    assert "adapter_model.safetensors" in files and "tuneops-complete.json" not in files
    assert not (half / "tuneops-complete.json").exists()
    assert not (killed / "result.json").exists()
    complete = half.with_name(f"checkpoint-{int(half.name.split('-')[1]) - 5}")
    assert (complete / "tuneops-complete.json").is_file()

    resume = subprocess.run(
        [*TUNEOPS, *_args(tiny_model_dir, snapshot_dir, killed), "--resume"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert resume.returncode == 0, resume.stderr[-3000:]
    # The newest complete checkpoint is used; the half-written one (files written before the
    # kill: see `files`) is removed before training goes on, then written again in full.
    assert f"removing incomplete checkpoint {half}" in resume.stderr, files
    assert _result(killed)["resumed_from"] == str(complete)
    first, resumed = _result(straight), _result(killed)
    assert resumed["global_step"] == first["global_step"] == 40
    assert resumed["final_loss"] == pytest.approx(first["final_loss"], rel=1e-3)
    assert resumed["eval_loss_after"] == pytest.approx(first["eval_loss_after"], rel=1e-3)
    assert resumed["run_id"] == json.loads((killed / "run_state.json").read_text())["run_id"]


@pytest.mark.e2e
def test_torchrun_two_cpu_processes_agree_and_only_rank0_logs(
    tiny_model_dir, snapshot_dir, tmp_path
):
    import mlflow
    from mlflow import MlflowClient

    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [
        str(torchrun),
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "tuneops.cli",
        *_args(tiny_model_dir, snapshot_dir, out, "optim.max_steps=6", "checkpoint.every_steps=3"),
    ]
    done = subprocess.run(cmd, env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained ddp:") == 1  # the summary comes from rank 0 only

    result = _result(out)
    assert result["world_size"] == 2
    assert result["global_step"] == 6
    assert result["extra"]["rank_divergence"] == 0.0  # identical trainable weights on both ranks

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = MlflowClient()
    experiment = client.get_experiment_by_name("tuneops-train")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1  # rank 1 opened no run
    run = runs[0]
    assert run.data.tags["tuneops.world_size"] == "2"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
    assert steps == sorted(set(steps))  # each step logged once, not once per rank
    assert sorted(p.name for p in (out / "checkpoints").glob("checkpoint-*")) == [
        "checkpoint-3",
        "checkpoint-6",
    ]
