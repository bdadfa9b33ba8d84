"""Concurrent and killed `tuneops promote` processes against a real MLflow tracking server.

The server runs on loopback with a SQLite backend; every promote and rollback is a separate
`tuneops` process, started together, killed with SIGKILL mid-promotion (paused by
``lock.settle_s``), or left holding an expired lock. Nothing of the registry is mocked: the
aliases, version tags and lock entries are read back from the server.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tuneops.core.process import Supervisor, free_port

GOOD = {"key_fact_recall": 0.50, "rouge_l": 0.30, "chrf": 35.0, "runaway_rate": 0.10}
BASE = {"key_fact_recall": 0.30, "rouge_l": 0.20, "chrf": 30.0, "runaway_rate": 0.20}
ROUNDS = 10
# Long enough that the second of two processes started together always finds the first
# inside its critical section, whatever the start-up jitter of a busy machine.
RACE_SETTLE_S = 3
REPO = Path(__file__).resolve().parents[2]
HELD = re.compile(r"is held by (\w+) \((\S+ \S+), pid (\d+) on ")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real `mlflow server` (SQLite backend, local artifact store) on a free loopback port."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", (root / "artifacts").as_uri(),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    supervisor = Supervisor(
        command,
        name="mlflow",
        log_path=root / "server.log",
        health_url=f"http://127.0.0.1:{port}/health",
        start_timeout=240,
        new_session=True,
    )
    with supervisor:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """What a training run keeps at `model/` (the gate reads only the run's metrics)."""
    out = tmp_path_factory.mktemp("model")
    (out / "config.json").write_text('{"model_type": "llama"}\n')
    return out


class Registry:
    """One registered model on the server, seen through the real client."""

    def __init__(self, uri: str, name: str, model_dir: Path) -> None:
        from workloads.registry.config import load_registry_config
        from workloads.registry.store import client_for

        self.uri, self.name, self.model_dir = uri, name, model_dir
        self.config = load_registry_config(overrides=[f"tracking.uri={uri}", f"name={name}"])
        self.client = client_for(self.config)

    def register(self) -> str:
        """A finished, evaluated training run registered as a new version; its number."""
        from tuneops.core.tracking import use_experiment
        from workloads.registry.registry import register

        experiment = use_experiment("tuneops-train", self.uri).experiment_id
        run_id = self.client.create_run(experiment).info.run_id
        self.client.log_artifacts(run_id, str(self.model_dir), "model")
        self.client.set_tag(run_id, "tuneops.eval.benchmark_digest", "bench-digest-1")
        for label, scores in (("candidate", GOOD), ("base", BASE)):
            for metric, value in scores.items():
                self.client.log_metric(run_id, f"eval.{label}.benchmark.{metric}", value)
        self.client.set_terminated(run_id)
        return register(self.config, run_id, client=self.client).version

    def alias(self, alias: str) -> str | None:
        from workloads.registry.store import alias_version

        found = alias_version(self.client, self.name, alias)
        return found.version if found else None

    def tags(self, version: str) -> dict[str, str]:
        return self.client.get_model_version(self.name, version).tags

    def lock_chain(self):
        from workloads.registry.lock import RegistryLock

        return RegistryLock(self.client, self.config, "read").entries()

    def tuneops(self, *args: str, settle_s: float = 0, **lock: float) -> list[str]:
        sets = [f"tracking.uri={self.uri}", f"name={self.name}", f"lock.settle_s={settle_s}"]
        sets += [f"lock.{key}={value}" for key, value in lock.items()]
        flags = [word for item in sets for word in ("--set", item)]
        return [sys.executable, "-m", "tuneops.cli", *args, *flags]

    def start(self, *args: str, **kwargs: float) -> subprocess.Popen:
        return subprocess.Popen(
            self.tuneops(*args, **kwargs),
            cwd=REPO,
            env={**os.environ, "MLFLOW_TRACKING_URI": self.uri},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, *args: str, **kwargs: float) -> tuple[int, str, str]:
        proc = self.start(*args, **kwargs)
        out, err = proc.communicate(timeout=180)
        return proc.returncode, out, err


def _last_line(text: str) -> str:
    return [line for line in text.splitlines() if line.strip()][-1]


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _champion_with_previous(reg: Registry) -> tuple[str, str]:
    """Two versions promoted one after the other with `tuneops promote`: (previous, champion)."""
    versions = []
    for _ in range(2):
        versions.append(reg.register())
        assert reg.run("promote")[0] == 0
    assert (reg.alias("previous"), reg.alias("champion")) == tuple(versions)
    return versions[0], versions[1]


def _kill_after_champion_moved(reg: Registry, holder: subprocess.Popen, version: str) -> None:
    """SIGKILL the holder once it moved ``champion`` and sleeps before moving ``previous``."""
    _wait_for(lambda: reg.alias("champion") == version, 120, f"champion to reach v{version}")
    os.kill(holder.pid, signal.SIGKILL)
    holder.communicate(timeout=30)
    assert holder.returncode == -signal.SIGKILL


@pytest.mark.e2e
def test_two_promotions_at_once_exactly_one_wins_each_round(server, model_dir):
    reg = Registry(server, "race-rounds", model_dir)
    reg.register()
    assert reg.run("promote")[0] == 0
    for round_no in range(1, ROUNDS + 1):
        before = reg.alias("champion")
        a, b = reg.register(), reg.register()
        procs = {v: reg.start("promote", "--version", v, settle_s=RACE_SETTLE_S) for v in (a, b)}
        results = {v: (p, *p.communicate(timeout=180)) for v, p in procs.items()}
        winners = [v for v, (p, _, _) in results.items() if p.returncode == 0]
        assert len(winners) == 1, f"round {round_no}: {results}"
        (winner,) = winners
        (loser,) = {a, b} - {winner}
        proc, _, err = results[loser]
        assert proc.returncode == 5, err
        # The loser ends with one line naming the winner's lock: owner id, command, pid.
        line = _last_line(err)
        assert line.startswith(f"error: the promotion lock of {reg.name} is held by "), line
        owner, command, pid = HELD.search(line).groups()
        newest = reg.lock_chain()[-1]
        assert (owner, command, pid) == (newest.owner, f"promote v{winner}", str(procs[winner].pid))
        assert f"add `--break-lock {owner}`" in line
        assert (
            f"promoted {reg.name} v{winner} to 'champion'; v{before} is now 'previous'"
            in (results[winner][1])
        )
        # Consistent: champion is the winner, previous the champion before, the gate's record
        # on the winner, nothing on the loser (its gate never ran).
        assert (reg.alias("champion"), reg.alias("previous")) == (winner, before)
        tags = reg.tags(winner)
        assert tags["tuneops.gate"] == "passed" and tags["tuneops.previous_champion"] == before
        assert "tuneops.gate" not in reg.tags(loser)
        # One lock taken per round, released, with only the newest entry kept.
        chain = reg.lock_chain()
        assert [e.epoch for e in chain] == [round_no + 1]
        assert chain[0].released and chain[0].tag("outcome") == "done"


@pytest.mark.e2e
def test_killed_holder_is_named_then_broken_and_its_promotion_finished(server, model_dir):
    reg = Registry(server, "killed-holder", model_dir)
    v1, v2 = _champion_with_previous(reg)
    v3, v4 = reg.register(), reg.register()

    holder = reg.start("promote", "--version", v3, settle_s=60)
    _kill_after_champion_moved(reg, holder, v3)
    # Killed half way: champion moved, previous not yet.
    assert (reg.alias("champion"), reg.alias("previous")) == (v3, v1)

    code, _, err = reg.run("promote", "--version", v4)
    assert code == 5
    line = _last_line(err)
    owner, command, pid = HELD.search(line).groups()
    assert (command, pid) == (f"promote v{v3}", str(holder.pid))
    assert line.endswith(f"add `--break-lock {owner}`")
    code, _, err = reg.run("rollback")
    assert code == 5 and f"is held by {owner} " in _last_line(err)
    code, _, err = reg.run("promote", "--version", v4, "--break-lock", "0badc0ffee00")
    assert code == 2 and "not 0badc0ffee00; nothing broken" in _last_line(err)
    assert (reg.alias("champion"), reg.alias("previous")) == (v3, v1)  # still untouched

    code, out, err = reg.run("promote", "--version", v4, "--break-lock", owner)
    assert code == 0, err
    assert f"broke the promotion lock of {reg.name} held by {owner}" in err
    assert (
        f"finished the interrupted promote v{v3} of {reg.name} left by {owner}: "
        f"champion v{v3}, previous v{v2}"
    ) in err
    assert f"promoted {reg.name} v{v4} to 'champion'; v{v3} is now 'previous'" in out
    assert (reg.alias("champion"), reg.alias("previous")) == (v4, v3)
    assert reg.tags(v3)["tuneops.previous_champion"] == v2
    assert reg.tags(v4)["tuneops.previous_champion"] == v3
    chain = reg.lock_chain()
    assert len(chain) == 1 and chain[0].tag("took_over") == owner and chain[0].released


@pytest.mark.e2e
def test_expired_lock_is_taken_over_by_rollback_which_finishes_first(server, model_dir):
    reg = Registry(server, "stale-holder", model_dir)
    v1, v2 = _champion_with_previous(reg)
    v3 = reg.register()

    holder = reg.start("promote", "--version", v3, settle_s=60, ttl_s=10)
    _kill_after_champion_moved(reg, holder, v3)
    stale = reg.lock_chain()[-1]
    assert not stale.released
    # Once its lease has run out, the next command takes it over with no flag.
    time.sleep(max(0.0, stale.expires_at - time.time()) + 0.5)

    code, out, err = reg.run("rollback")
    assert code == 0, err
    assert f"took over the promotion lock of {reg.name} from {stale.owner}" in err
    assert "its lease ran out" in err
    assert f"finished the interrupted promote v{v3}" in err
    assert f"rolled back {reg.name}: 'champion' v{v3} -> v{v2}; 'previous' is now v{v1}" in out
    assert (reg.alias("champion"), reg.alias("previous")) == (v2, v1)
    tags = reg.tags(v3)
    assert tags["tuneops.gate"] == "passed" and "tuneops.rolled_back_at" in tags
    assert reg.lock_chain()[-1].tag("took_over") == stale.owner


@pytest.mark.e2e
def test_simultaneous_takers_race_on_one_create_and_one_wins(server, model_dir):
    """Eight takers released by one barrier all read the same free chain and create the same
    next entry: the server's unique name lets exactly one through, the rest name it."""
    from workloads.registry.lock import LockHeldError, RegistryLock

    reg = Registry(server, "barrier-race", model_dir)
    reg.register()
    first = RegistryLock(reg.client, reg.config, "setup").acquire()
    first.release("done")
    takers = [RegistryLock(reg.client, reg.config, f"taker {i}") for i in range(8)]
    barrier = threading.Barrier(len(takers))

    def take(lock: RegistryLock) -> str:
        barrier.wait()
        try:
            lock.acquire()
        except LockHeldError as exc:
            return str(exc)
        return "held"

    with ThreadPoolExecutor(len(takers)) as pool:
        results = list(pool.map(take, takers))
    assert results.count("held") == 1, results
    (winner,) = [t for t, r in zip(takers, results, strict=True) if r == "held"]
    refusals = [r for r in results if r != "held"]
    assert all(f"is held by {winner.owner} (taker " in r for r in refusals), refusals
    assert [(e.epoch, e.owner) for e in reg.lock_chain()][-1] == (2, winner.owner)
    winner.check()
