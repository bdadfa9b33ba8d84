"""A small framework for the processes of the local platform.

A ``Service`` is one background process with a pid file, a log file and a health check, all
under ``<cache>/local/<name>/``, run by ``tuneops.core.process.Supervisor`` in a session of its
own (it outlives the command that started it). ``start`` is idempotent (a healthy service is left
alone), ``stop`` ends only the process group whose pid it recorded, and ``status`` says what runs
where. The services of the local platform and their order are listed in
``infra.local.registry``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from tuneops.core.errors import UserError
from tuneops.core.paths import cache_dir
from tuneops.core.process import Supervisor, http_ok, port_in_use, read_tail


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
    note: str | None = None  # one more thing a user of the service needs, e.g. its token file

    def line(self) -> str:
        state = "healthy" if self.healthy else ("running, not ready" if self.running else "stopped")
        where = f" at {self.url}" if self.url and self.running else ""
        pid = f" (pid {self.pid})" if self.running else ""
        note = f"; {self.note}" if self.note else ""
        return f"{self.name:<14} {state}{where}{pid}{note}"


class Service:
    """One local process. Subclasses set ``name`` and implement ``command`` and ``healthy``;
    an HTTP server that listens on ``host``:``port`` may set ``health_path`` instead of
    implementing ``healthy``."""

    name: str = ""
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
        return http_ok(f"{self.url}{self.health_path}")

    @property
    def url(self) -> str | None:
        """``http://host:port`` for a service that listens on a port."""
        if self.host is None or self.port is None:
            return None
        return f"http://{self.host}:{self.port}"

    def port_taken(self) -> bool:
        if self.host is None or self.port is None:
            return False
        return port_in_use(self.host, self.port)

    # -- process handling ---------------------------------------------------------------
    def supervisor(self, command: list[str] | None = None) -> Supervisor:
        """The supervisor of this service's process: it finds a running one by its pid file,
        and starts ``command`` when given one."""
        return Supervisor(
            command or (),
            name=self.name,
            log_path=self.log_file,
            append_log=True,
            pid_file=self.pid_file,
            env=self.environment() if command else None,
            cwd=self.root,
            ready=self.healthy,
            start_timeout=self.start_timeout_s,
            new_session=True,
        )

    def pid(self) -> int | None:
        return self.supervisor().pid()

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
        self.supervisor(self.command()).start()
        return self.status()

    def stop(self, timeout: float = 15.0) -> bool:
        """Stop the recorded process; whether there was one to stop."""
        was_running = self.running()
        self.supervisor().stop(timeout)
        return was_running

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
        return read_tail(self.log_file, lines)


def python() -> str:
    return sys.executable
