"""A small framework for the processes of the local platform.

A ``Service`` is one background process with a pid file, a log file and a health check, all
under ``<cache>/local/<name>/``, run by ``tuneops.core.process.Supervisor`` in a session of its
own (it outlives the command that started it). ``start`` is idempotent (a healthy service is left
alone), ``stop`` ends only the process group whose pid it recorded, and ``status`` says what runs
where. The services of the local platform and their order are listed in
``infra.local.registry``.

``status`` tells a service that was stopped (no pid recorded) from one that is down (its
recorded process is gone: killed or crashed) or unhealthy (running, but failing its health
check); the last two are failures, which ``tuneops local status`` reports and exits non-zero on,
and which ``start`` repairs (a down service is started again, an unhealthy one restarted).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from infra.local.processes import process_running
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
    problem: str | None = None  # why a service that should run does not work: a failure

    @property
    def failed(self) -> bool:
        return self.problem is not None

    def line(self) -> str:
        if self.healthy:
            state = "healthy"
        elif self.running:
            state = "UNHEALTHY"
        else:
            state = "DOWN" if self.failed else "stopped"
        where = f" at {self.url}" if self.url and self.running else ""
        pid = f" (pid {self.pid})" if self.running else ""
        problem = f": {self.problem}" if self.problem else ""
        note = f"; {self.note}" if self.note else ""
        return f"{self.name:<14} {state}{where}{pid}{problem}{note}"


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

    def diagnose(self) -> str:
        """Why a running service is not healthy, in a few words."""
        if self.health_path is not None:
            return f"{self.url}{self.health_path} does not answer 200"
        return "it fails its health check"

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

    def recorded_pid(self) -> int | None:
        """The pid in the pid file, live or not: a recorded pid whose process is gone means
        the service was killed or crashed (a clean stop removes the file)."""
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def pid(self) -> int | None:
        """The live process of the service (a zombie left unreaped counts as gone)."""
        pid = self.supervisor().pid()
        return pid if pid is not None and process_running(pid) else None

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
        """Stop the recorded process (SIGTERM to its group, SIGKILL after ``timeout``); whether
        there was one to stop. A recorded process that is already gone is forgotten."""
        pid = self.pid()
        supervisor = self.supervisor()
        if pid is not None:
            supervisor.terminate()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and process_running(pid):
                time.sleep(0.1)
            if process_running(pid):
                supervisor.stop(timeout=0)  # SIGKILL to the group
        self.pid_file.unlink(missing_ok=True)
        return pid is not None

    def status(self) -> ServiceStatus:
        pid = self.pid()
        healthy = pid is not None and self.healthy()
        problem = None
        if pid is not None and not healthy:
            problem = self.diagnose()
        elif pid is None and self.recorded_pid() is not None:
            problem = (
                f"its process (pid {self.recorded_pid()}) is gone: killed or crashed; "
                f"see {self.log_file}"
            )
        return ServiceStatus(
            name=self.name,
            running=pid is not None,
            healthy=healthy,
            pid=pid,
            url=self.url,
            log=self.log_file,
            problem=problem,
        )

    def logs(self, lines: int = 50) -> str:
        return read_tail(self.log_file, lines)


def python() -> str:
    return sys.executable
