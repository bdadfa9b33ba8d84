"""A small framework for the processes of the local platform.

A ``Service`` is one background process with a pid file, a log file and a health check, all
under ``<cache>/local/<name>/``. ``start`` is idempotent (a healthy service is left alone),
``stop`` ends only the process whose pid it recorded, and ``status`` says what runs where.
Services register themselves with ``@register``; modules in this package are discovered, so a
new service is a new module here.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pkgutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tuneops.core.errors import UserError
from tuneops.core.paths import cache_dir

REGISTRY: dict[str, type[Service]] = {}


def register(cls: type[Service]) -> type[Service]:
    REGISTRY[cls.name] = cls
    return cls


def discover() -> dict[str, type[Service]]:
    """Import every module of this package so its services register; ordered by ``order``."""
    package = importlib.import_module("infra.local")
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"infra.local.{info.name}")
    return dict(sorted(REGISTRY.items(), key=lambda kv: (kv[1].order, kv[0])))


def local_root() -> Path:
    path = cache_dir() / "local"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class ServiceStatus:
    name: str
    running: bool
    healthy: bool
    pid: int | None
    url: str | None
    log: Path

    def line(self) -> str:
        state = "healthy" if self.healthy else ("running, not ready" if self.running else "stopped")
        where = f" at {self.url}" if self.url and self.running else ""
        pid = f" (pid {self.pid})" if self.running else ""
        return f"{self.name:<14} {state}{where}{pid}"


class Service:
    """One local process. Subclasses set ``name`` and implement ``command`` and ``healthy``;
    an HTTP server that listens on ``host``:``port`` may set ``health_path`` instead of
    implementing ``healthy``."""

    name: str = ""
    order: int = 100
    start_timeout_s: float = 60.0
    health_path: str | None = None  # answers 200 over HTTP once the service is ready

    def __init__(
        self, root: Path | None = None, *, host: str | None = None, port: int | None = None
    ) -> None:
        self.root = (root or local_root()) / self.name
        self.root.mkdir(parents=True, exist_ok=True)
        self.pid_file = self.root / "pid"
        self.log_file = self.root / "service.log"
        self.host = host
        self.port = port

    # -- to implement -------------------------------------------------------------------
    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return {}

    def healthy(self) -> bool:
        if self.health_path is None:
            raise NotImplementedError
        import requests

        try:
            return requests.get(f"{self.url}{self.health_path}", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    @property
    def url(self) -> str | None:
        """``http://host:port`` for a service that listens on a port."""
        if self.host is None or self.port is None:
            return None
        return f"http://{self.host}:{self.port}"

    def address(self) -> tuple[str, int] | None:
        """(host, port) the service listens on, checked to be free before it starts."""
        if self.host is None or self.port is None:
            return None
        return (self.host, self.port)

    def port_taken(self) -> bool:
        addr = self.address()
        if addr is None:
            return False
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            return sock.connect_ex(addr) == 0

    # -- process handling ---------------------------------------------------------------
    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def running(self) -> bool:
        return self.pid() is not None

    def start(self) -> ServiceStatus:
        if self.running() and self.healthy():
            return self.status()
        if self.running():
            self.stop()
        if self.port_taken():
            raise UserError(
                f"{self.name}: another program already listens at {self.url}; stop it or choose "
                "another port in the config"
            )
        env = {**os.environ, **self.environment()}
        with open(self.log_file, "ab") as log:
            log.write(f"\n--- start {time.strftime('%Y-%m-%dT%H:%M:%S')} ---\n".encode())
            log.flush()
            proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.root,
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        self._wait(lambda: self.healthy(), proc)
        return self.status()

    def _wait(self, ready: Callable[[], bool], proc: subprocess.Popen) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise UserError(
                    f"{self.name} exited at start (code {proc.returncode}); the end of "
                    f"{self.log_file}:\n{self.logs(15)}"
                )
            if ready():
                return
            time.sleep(0.2)
        self.stop()
        raise UserError(
            f"{self.name} did not become healthy within {self.start_timeout_s:.0f} s; see "
            f"{self.log_file}"
        )

    def stop(self, timeout: float = 15.0) -> bool:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True

    def status(self) -> ServiceStatus:
        pid = self.pid()
        return ServiceStatus(
            name=self.name,
            running=pid is not None,
            healthy=pid is not None and self.healthy(),
            pid=pid,
            url=self.url,
            log=self.log_file,
        )

    def logs(self, lines: int = 50) -> str:
        if not self.log_file.is_file():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of this process counts as gone.
    with contextlib.suppress(ChildProcessError, OSError):
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    return True


def python() -> str:
    return sys.executable
