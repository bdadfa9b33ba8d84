"""The MLflow tracking server stops answering, then goes away for a minute, during a run.

A real `mlflow server` (SQLite store) on a free loopback port, a real `tuneops train` process
logging to it. Two faults hit the server's whole process group:

- paused (SIGSTOP) from checkpoint-5 to checkpoint-10: connections hang until the client's
  timeout; after SIGCONT the run sends what it kept while training is still going;
- killed (SIGKILL) once the run has sent that: down for OUTAGE_S and until training has gone
  ten steps further, then started again on the same port and store. The run trains on to its
  last step meanwhile and waits for the server at its end.

The run must end FINISHED in MLflow with every metric line the trainer printed, each step once
(a request the paused server answered late is sent again and kept once). Nothing of MLflow or
the trainer is mocked.
"""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from model_helpers import random_llama_dir

from tuneops.core.process import Supervisor, free_port
from workloads.train import checkpoints

OUTAGE_S = 60
STEPS = 60
EVERY = 5


@pytest.fixture(scope="module")
def small_model_dir(tmp_path_factory, embedded_tokenizer_dir) -> Path:
    """A randomly initialised four-layer Llama, wide enough that a step takes about a second
    on one CPU thread: the run outlasts the outage with a few dozen steps."""
    return random_llama_dir(
        tmp_path_factory.mktemp("small-model"),
        embedded_tokenizer_dir,
        hidden_size=512,
        intermediate_size=1536,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=4,
    )


def _server(root: Path, port: int) -> Supervisor:
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", (root / "artifacts").as_uri(),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    return Supervisor(
        command,
        name="mlflow",
        log_path=root / "server.log",
        append_log=True,
        health_url=f"http://127.0.0.1:{port}/health",
        env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # no job runner: a faster start
        start_timeout=240,
        new_session=True,
    )


def _newest_step(out: Path) -> int:
    newest = checkpoints.newest_valid(out / "checkpoints")
    return (checkpoints.step_of(newest) or 0) if newest else 0


def _wait(condition, proc: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"training exited ({proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _train(model: Path, snapshot: Path, out: Path, uri: str, cache: Path) -> subprocess.Popen:
    sets = [
        f"base_model={model}",
        f"tracking.uri={uri}",
        "tracking.log_model=false",
        "tracking.retry.request_timeout_s=2",
        "tracking.retry.backoff_s=0.5",
        "tracking.retry.max_backoff_s=4",
        "tracking.retry.final_wait_s=180",
        "data.max_length=512",
        "data.max_eval_examples=4",
        "optim.batch_size=1",
        f"optim.max_steps={STEPS}",
        f"checkpoint.every_steps={EVERY}",
        "eval.every_epoch=false",
        "eval.recall_questions=null",
        "merge=false",
    ]
    args = ["train", "--dataset", str(snapshot), "--output", str(out)]
    for item in sets:
        args += ["--set", item]
    env = {**os.environ, "TUNEOPS_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    out.mkdir(parents=True)
    with open(out / "stdout.log", "w") as stdout, open(out / "stderr.log", "w") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "tuneops.cli", *args], env=env, stdout=stdout, stderr=stderr
        )


def _printed(stdout: str, key: str) -> int:
    """How many of the trainer's log lines (printed dicts) carry ``key``."""
    lines = [line for line in stdout.splitlines() if line.startswith("{'")]
    return sum(key in ast.literal_eval(line) for line in lines)


def test_run_survives_a_paused_then_a_dead_tracking_server(small_model_dir, snapshot_dir, tmp_path):
    root, port = tmp_path / "mlflow", free_port()
    root.mkdir()
    uri = f"http://127.0.0.1:{port}"
    out = tmp_path / "run"
    server = _server(root, port).start()
    proc = _train(small_model_dir, snapshot_dir, out, uri, tmp_path / "cache")
    back = lambda: (out / "stderr.log").read_text().count("answers again")  # noqa: E731
    try:
        _wait(lambda: _newest_step(out) >= EVERY, proc, 300, "checkpoint-5")
        os.killpg(server.proc.pid, signal.SIGSTOP)
        _wait(lambda: _newest_step(out) >= 2 * EVERY, proc, 300, "checkpoint-10")
        os.killpg(server.proc.pid, signal.SIGCONT)
        _wait(lambda: back() == 1, proc, 120, "the metrics kept while paused to be sent")

        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait()
        down_at, down_step = time.monotonic(), _newest_step(out)
        _wait(lambda: time.monotonic() - down_at >= OUTAGE_S, proc, OUTAGE_S + 5, "the outage")
        _wait(lambda: _newest_step(out) >= down_step + 10, proc, 300, "ten steps more")
        up_step = _newest_step(out)
        server = _server(root, port).start()  # the same port and store
        outage = time.monotonic() - down_at
        proc.wait(timeout=400)
        assert outage >= OUTAGE_S and up_step >= down_step + 10  # training went on meanwhile
        _check_run(uri, out, proc.returncode)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if server.proc.poll() is None:
            os.killpg(server.proc.pid, signal.SIGCONT)
        server.stop()


def _check_run(uri: str, out: Path, returncode: int) -> None:
    from mlflow import MlflowClient

    stdout, stderr = (out / "stdout.log").read_text(), (out / "stderr.log").read_text()
    assert returncode == 0, stderr[-3000:]
    assert stderr.count("does not answer") == 2
    back = re.findall(r"answers again after \d+ s \(step (\d+)\)", stderr)
    assert len(back) == 2 and int(back[0]) < STEPS  # the first time while still training
    assert not (out / "mlflow_unsent_metrics.json").exists()

    client = MlflowClient(uri)
    run_id = json.loads((out / "run_state.json").read_text())["run_id"]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.end_time
    loss = client.get_metric_history(run_id, "loss")
    assert sorted(m.step for m in loss) == list(range(1, STEPS + 1))  # each step once
    assert len(loss) == _printed(stdout, "loss") == STEPS
    assert len(client.get_metric_history(run_id, "eval_loss")) == _printed(stdout, "eval_loss")
    assert len(client.get_metric_history(run_id, "grad_norm")) == STEPS
    assert "train_seconds" in run.data.metrics  # logged at the end, after the outage
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"adapter", "loss_curve.png"} <= artifacts


def test_a_server_that_never_comes_back_costs_no_step_and_keeps_every_value(tmp_path):
    """Nothing listens at the tracking URI (connections are refused): a log call returns at
    once instead of after MLflow's own retries (minutes), and at the end the values are saved
    with one line that names the run and the file."""
    from mlflow import MlflowClient

    from workloads.train.metric_outbox import UNSENT, MetricOutbox, MetricRetry

    uri = f"http://127.0.0.1:{free_port()}"
    retry = MetricRetry(request_timeout_s=1, backoff_s=0.1, max_backoff_s=0.2, final_wait_s=1)
    outbox = MetricOutbox(MlflowClient(uri), "0123abcd", uri, retry)
    before = dict(os.environ)
    started = time.monotonic()
    for step in range(1, 4):
        outbox.add({"loss": 2.0 / step, "learning_rate": 1e-3}, step)
    assert time.monotonic() - started < 10  # MLflow's default retries alone take minutes
    assert dict(os.environ) == before  # its retry settings are changed only around the calls
    assert outbox.failures >= 1 and outbox.sent == 0

    assert outbox.drain(retry.final_wait_s) is False
    error = outbox.give_up("flaky-run", tmp_path, retry.final_wait_s)
    assert "\n" not in str(error)
    assert str(error).startswith(f"MLflow at {uri} did not answer within 1 s at the end of run ")
    assert "flaky-run (id 0123abcd): 6 metric values kept in " + str(tmp_path / UNSENT) in str(
        error
    )
    saved = json.loads((tmp_path / UNSENT).read_text())
    assert saved["run_id"] == "0123abcd" and saved["tracking_uri"] == uri
    assert [(m["key"], m["step"]) for m in saved["metrics"]] == [
        (key, step) for step in (1, 2, 3) for key in ("loss", "learning_rate")
    ]
