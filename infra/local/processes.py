"""What the kernel says about the processes of the local services (Linux ``/proc``).

A local service outlives the command that started it, so when it dies its parent is PID 1 (or
a subreaper). Where that parent does not reap its children, as in some containers, a killed
or stopped process stays a zombie: signal 0 still reaches it, yet it runs nothing and holds no
port. These helpers count such a process as gone, and find the processes a server left behind
by the folder they work in. Without ``/proc`` they fall back to what signal 0 says.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from tuneops.core.process import pid_alive

PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first), or None."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def command_name(pid: int) -> str | None:
    """The process's command name (``comm``), or None when it cannot be read."""
    try:
        return (PROC / str(pid) / "comm").read_text().strip()
    except OSError:
        return None


def process_running(pid: int) -> bool:
    """Whether ``pid`` is a live process: it exists and is not a zombie."""
    if not pid_alive(pid):
        return False
    fields = _stat_fields(pid)
    return fields is None or fields[0] != "Z"


def processes_in(folder: Path) -> list[int]:
    """Live processes whose working folder is ``folder`` (those this user may inspect)."""
    target = folder.resolve()
    found = []
    for entry in PROC.glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if Path(os.readlink(entry / "cwd")) == target and process_running(int(entry.name)):
                found.append(int(entry.name))
    return found


def end_processes(pids: list[int], grace_s: float) -> list[int]:
    """Wait up to ``grace_s`` for ``pids`` to exit, then SIGKILL those still running; the ones
    that had to be killed."""
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(process_running(pid) for pid in pids):
        time.sleep(0.1)
    killed = [pid for pid in pids if process_running(pid)]
    for pid in killed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return killed
