"""Run the model server in a background process: for tests, the demo and benchmarks.

    with ServerProcess("embedded:smollm2-135m-instruct") as server:
        client = openai.OpenAI(base_url=server.openai_url, api_key=server.token or "none")

The server binds a free port on 127.0.0.1, the helper waits until ``/v2/health/ready`` says
ready (or the process dies, whose log tail then becomes the error), and ``stop()`` sends SIGTERM
so in-flight requests finish before the process exits.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tuneops.core.errors import UserError
from tuneops.core.paths import REPO_ROOT


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


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
        self.token = token
        self.env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.log_path = Path(log_path) if log_path else None
        self.proc: subprocess.Popen | None = None
        self._log_file = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_url(self) -> str:
        return f"{self.url}/openai/v1"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

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
        import httpx

        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        if self.token:
            env["TUNEOPS_SERVE_TOKEN"] = self.token
        if self.log_path is None:
            fd, path = tempfile.mkstemp(prefix="tuneops-serve-", suffix=".log")
            os.close(fd)
            self.log_path = Path(path)
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 (lives as long as the server)
        self.proc = subprocess.Popen(
            self.command(),
            cwd=REPO_ROOT,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise UserError(
                    f"the model server exited with code {self.proc.returncode} before it was "
                    f"ready; its log ends with:\n{self.log_tail()}"
                )
            try:
                reply = httpx.get(f"{self.url}/v2/health/ready", timeout=2.0)
                if reply.status_code == 200 and reply.json().get("ready"):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop(timeout=5)
        raise UserError(
            f"the model server was not ready within {self.startup_timeout:.0f} s; "
            f"log tail:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def terminate(self) -> None:
        """Send SIGTERM without waiting (the server drains in-flight requests, then exits)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` for a clean exit, then kill. Returns the exit code."""
        if self.proc is None:
            return None
        self.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
