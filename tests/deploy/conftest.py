"""A real Prometheus server and promtool, from Debian's package that
``scripts/fetch_prometheus.sh`` (``make prometheus``) unpacks into .cache/prometheus.

Where the package cannot be fetched the tests that need it fail with the script's one line;
they are never skipped."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tuneops.core.paths import REPO_ROOT
from tuneops.core.process import Supervisor, free_port

FETCH = REPO_ROOT / "scripts" / "fetch_prometheus.sh"


@pytest.fixture(scope="session")
def prometheus_bin() -> Path:
    """The folder holding the pinned ``prometheus`` and ``promtool``."""
    done = subprocess.run(["bash", str(FETCH)], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"{FETCH} exited {done.returncode}"]
        pytest.fail(lines[-1], pytrace=False)
    return Path(done.stdout.strip().splitlines()[-1])


class PrometheusServer:
    """``prometheus`` on a free loopback port with the given scrape config, its data in
    ``workdir``; ready once ``/-/ready`` answers."""

    def __init__(self, binary: Path, workdir: Path, config: dict) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config_file = workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        self._process = Supervisor(
            [
                str(binary),
                f"--config.file={config_file}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            name="prometheus",
            log_path=workdir / "prometheus.log",
            health_url=f"{self.url}/-/ready",
            start_timeout=60,
        )

    def __enter__(self) -> PrometheusServer:
        self._process.start()
        return self

    def __exit__(self, *exc) -> None:
        self._process.stop()

    def log_tail(self) -> str:
        return self._process.log_tail()


@pytest.fixture
def start_prometheus(prometheus_bin, tmp_path):
    """Start a Prometheus with a scrape config (a mapping); stopped after the test."""
    started: list[PrometheusServer] = []

    def start(config: dict) -> PrometheusServer:
        workdir = tmp_path / f"prometheus-{len(started)}"
        workdir.mkdir()
        server = PrometheusServer(prometheus_bin / "prometheus", workdir, config)
        started.append(server.__enter__())
        return server

    yield start
    for server in started:
        server.__exit__(None, None, None)
