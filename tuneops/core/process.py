"""One supervised child process: a command, a log file, a pid, ready once it answers healthy.

    with Supervisor(["python", "-m", "http.server", "8000"], name="files",
                    health_url="http://127.0.0.1:8000/") as files:
        ...

``start`` opens the log file (appending with a start marker, or truncating; a temporary file
when none is given), starts the command with its output in that log, records the pid (also in
``pid_file`` when one is given, so another process can find and stop it later) and waits at
most ``start_timeout`` seconds for the health check: ``health_url`` answering 200, or the
``ready`` callable returning true. A process that exits first, or never becomes healthy, is a
``UserError`` with the end of its log. ``stop`` sends SIGTERM (to the process group when it
runs in a session of its own), waits, then SIGKILLs what is left.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tuneops.core.errors import UserError

POLL_S = 0.2
# Loopback health checks never go through a proxy from the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    """Whether something accepts connections at ``host``:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """Whether a GET of ``url`` answers 200."""
    try:
        with _DIRECT.open(url, timeout=timeout) as reply:
            return reply.status == 200
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError):
        return False


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists; a zombie (of any parent) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(ChildProcessError, OSError):
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Whether ``pid`` is a zombie (state ``Z`` in ``/proc/<pid>/stat``): dead, waiting for a
    parent that may never reap it (a container whose first process does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False  # no /proc (not Linux) or gone meanwhile: os.kill has answered
    return stat.rsplit(")", 1)[-1].split()[:1] == ["Z"]


def read_tail(path: Path | None, lines: int) -> str:
    if path is None or not path.is_file():
        return ""
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


class Supervisor:
    """Starts, watches and stops one child process (see the module docstring)."""

    def __init__(
        self,
        command: Sequence[str] = (),
        *,
        name: str,
        log_path: str | Path | None = None,
        append_log: bool = False,
        pid_file: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        health_url: str | None = None,
        ready: Callable[[], bool] | None = None,
        start_timeout: float = 60.0,
        new_session: bool = False,
    ) -> None:
        self.command = list(command)
        self.name = name
        self.log_path = Path(log_path) if log_path else None
        self.append_log = append_log
        self.pid_file = Path(pid_file) if pid_file else None
        self.env = dict(env or {})
        self.cwd = Path(cwd) if cwd else None
        self.health_url = health_url
        self.ready = ready
        self.start_timeout = start_timeout
        self.new_session = new_session
        self.proc: subprocess.Popen | None = None

    # -- state ----------------------------------------------------------------------------
    def healthy(self) -> bool:
        if self.ready is not None:
            return self.ready()
        if self.health_url is not None:
            return http_ok(self.health_url)
        return self.pid() is not None

    def pid(self) -> int | None:
        """The live process: the child this object started, else the one in ``pid_file``."""
        if self.proc is not None:
            return self.proc.pid if self.proc.poll() is None else None
        if self.pid_file is None:
            return None
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def running(self) -> bool:
        return self.pid() is not None

    def log_tail(self, lines: int = 30) -> str:
        return read_tail(self.log_path, lines)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> Supervisor:
        """Start the command and wait until it is healthy; the supervisor itself is returned."""
        if not self.command:
            raise ValueError(f"{self.name}: no command to start")
        with self._open_log() as log:
            self.proc = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
                cwd=self.cwd,
                start_new_session=self.new_session,
            )
        if self.pid_file is not None:
            self.pid_file.write_text(str(self.proc.pid))
        self._wait_healthy()
        return self

    def _open_log(self):
        if self.log_path is None:
            fd, path = tempfile.mkstemp(prefix=f"tuneops-{_slug(self.name)}-", suffix=".log")
            os.close(fd)
            self.log_path = Path(path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab" if self.append_log else "wb")  # noqa: SIM115
        if self.append_log:
            log.write(f"\n--- start {time.strftime('%Y-%m-%dT%H:%M:%S')} ---\n".encode())
            log.flush()
        return log

    def _wait_healthy(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._forget_pid()
                raise UserError(
                    f"{self.name} exited with code {self.proc.returncode} before it was ready; "
                    f"the end of {self.log_path}:\n{self.log_tail(15)}"
                )
            if self.healthy():
                return
            time.sleep(POLL_S)
        self.stop(timeout=5)
        raise UserError(
            f"{self.name} was not ready within {self.start_timeout:.0f} s; the end of "
            f"{self.log_path}:\n{self.log_tail(15)}"
        )

    def terminate(self) -> None:
        """Send SIGTERM without waiting (a server drains its in-flight requests, then exits)."""
        self._signal(signal.SIGTERM)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL. Returns the exit code of a child
        this object started (None for a process found through ``pid_file``)."""
        if self.pid() is not None:
            self.terminate()
            if not self._wait_exit(timeout):
                self._signal(signal.SIGKILL)
                if self.proc is not None:
                    self.proc.wait()
        self._forget_pid()
        return self.proc.returncode if self.proc is not None else None

    def _wait_exit(self, timeout: float) -> bool:
        if self.proc is not None:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.running():
            time.sleep(0.1)
        return not self.running()

    def _signal(self, sig: int) -> None:
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            if self.new_session:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)

    def _forget_pid(self) -> None:
        if self.pid_file is not None:
            self.pid_file.unlink(missing_ok=True)

    def __enter__(self) -> Supervisor:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-") or "process"
