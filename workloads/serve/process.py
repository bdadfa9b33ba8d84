"""Run the model server in a background process: for tests, the demo and benchmarks.

    with ServerProcess("embedded:smollm2-135m-instruct") as server:
        client = openai.OpenAI(base_url=server.openai_url, api_key=server.token)

The server binds a free port on 127.0.0.1 and is started as ``python -m tuneops.cli serve``
under ``tuneops.core.process.Supervisor``: it is ready when ``/v2/health/ready`` answers (a
process that dies first makes its log tail the error), and ``stop()`` sends SIGTERM so in-flight
requests finish before the process exits. The server is closed like any other: without a
``token`` a random one is made, so ``server.token`` and ``server.headers`` are always set.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

from tuneops.core.paths import REPO_ROOT
from tuneops.core.process import Supervisor, free_port, read_tail

READY_PATH = "/v2/health/ready"


class ServerProcess:
    def __init__(
        self,
        model: str,
        *,
        config: str | Path | None = None,
        overrides: list[str] | None = None,
        name: str | None = None,
        port: int | None = None,
        token: str | None = None,
        env: dict[str, str] | None = None,
        startup_timeout: float = 300.0,
        log_path: str | Path | None = None,
    ) -> None:
        self.model = model
        self.config = config
        self.overrides = list(overrides or [])
        self.name = name
        self.host = "127.0.0.1"
        self.port = port or free_port(self.host)
        self.token = token or secrets.token_urlsafe(32)
        self.env = dict(env or {})
        self.startup_timeout = startup_timeout
        self._log_path = Path(log_path) if log_path else None
        self._process: Supervisor | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_url(self) -> str:
        return f"{self.url}/openai/v1"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def proc(self) -> subprocess.Popen | None:
        return self._process.proc if self._process else None

    @property
    def log_path(self) -> Path | None:
        return self._process.log_path if self._process else self._log_path

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "tuneops.cli", "serve", "--model", self.model]
        cmd += ["--host", self.host, "--port", str(self.port)]
        if self.config:
            cmd += ["--config", str(self.config)]
        if self.name:
            cmd += ["--name", self.name]
        for item in self.overrides:
            cmd += ["--set", item]
        return cmd

    def start(self) -> ServerProcess:
        env = {**self.env, "PYTHONUNBUFFERED": "1", "TUNEOPS_SERVE_TOKEN": self.token}
        self._process = Supervisor(
            self.command(),
            name="the model server",
            log_path=self._log_path,
            env=env,
            cwd=REPO_ROOT,
            health_url=f"{self.url}{READY_PATH}",
            start_timeout=self.startup_timeout,
        )
        self._process.start()
        return self

    def log_tail(self, lines: int = 30) -> str:
        return read_tail(self.log_path, lines)

    def terminate(self) -> None:
        """Send SIGTERM without waiting (the server drains in-flight requests, then exits)."""
        if self._process is not None:
            self._process.terminate()

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` for a clean exit, then kill. Returns the exit code."""
        return self._process.stop(timeout) if self._process is not None else None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
