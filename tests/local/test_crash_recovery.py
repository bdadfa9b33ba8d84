"""What a killed local service leaves behind, and how status and start deal with it, with real
processes: a service whose recorded process is gone is DOWN (a clean stop is not), and
PostgreSQL's lock files and leftover processes are cleared only when no live server of the
cluster holds them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from infra.local import ServiceName
from infra.local import postgres as postgres_module
from infra.local.postgres import LocalPlatformSettings, PostgresService, PostgresSettings
from infra.local.processes import process_running, processes_in
from infra.local.service import Service
from tuneops.core.process import free_port


class Sleeper(Service):
    name = "sleeper"
    start_timeout_s = 10.0

    def command(self) -> list[str]:
        return [sys.executable, "-c", "import time; time.sleep(300)"]

    def healthy(self) -> bool:
        return True


def test_a_killed_service_is_down_and_a_stopped_one_is_not(tmp_path):
    service = Sleeper(tmp_path)
    assert service.status().line().split()[1:] == ["stopped"] and not service.status().failed
    pid = service.start().pid
    assert service.status().healthy
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and service.running():
        time.sleep(0.05)
    status = service.status()
    assert status.failed and not status.running
    assert f"DOWN: its process (pid {pid}) is gone: killed or crashed" in status.line()
    # start brings it back; stop is clean, and a cleanly stopped service is no failure.
    again = service.start()
    assert again.healthy and again.pid != pid
    assert service.stop() and not process_running(again.pid)
    assert not service.status().failed and not service.pid_file.exists()


@pytest.fixture
def cluster_folder():
    """A PostgreSQL service over a folder its account may enter (no cluster inside)."""
    base = Path(tempfile.mkdtemp(prefix="tuneops-crash-"))
    base.chmod(0o755)
    settings = LocalPlatformSettings(postgres=PostgresSettings(port=free_port()))
    service = PostgresService(base, settings)
    service.data_dir.mkdir(parents=True)
    started: list[subprocess.Popen] = []

    def spawn(program: str, cwd: Path) -> subprocess.Popen:
        proc = subprocess.Popen([program, "300"], cwd=cwd)
        started.append(proc)
        deadline = time.monotonic() + 10  # until it works in its folder
        while time.monotonic() < deadline and proc.pid not in processes_in(cwd):
            time.sleep(0.05)
        return proc

    yield service, spawn, base
    for proc in started:
        proc.kill()
        proc.wait()
    shutil.rmtree(base, ignore_errors=True)


def test_lock_files_naming_no_live_server_are_removed(cluster_folder):
    service, spawn, base = cluster_folder
    other = spawn(shutil.which("sleep"), base)  # a live process, but not this cluster's server
    postmaster_pid, socket_lock = service.lock_files()
    postmaster_pid.write_text(f"{other.pid}\n{service.data_dir}\n")
    socket_lock.write_text("999999999\n")  # no such process
    done = service.clear_after_crash()
    assert not postmaster_pid.exists() and not socket_lock.exists()
    assert f"removed postmaster.pid of pid {other.pid}" in done
    assert other.poll() is None  # a process elsewhere is left alone
    assert service.clear_after_crash() is None  # nothing left to clear


def test_processes_the_old_server_left_are_ended(cluster_folder, monkeypatch):
    service, spawn, _ = cluster_folder
    monkeypatch.setattr(postgres_module, "LEFTOVER_GRACE_S", 0.3)
    leftover = spawn(shutil.which("sleep"), service.data_dir)
    done = service.clear_after_crash()
    assert leftover.wait(timeout=10) == -signal.SIGKILL
    assert "killed 1 process(es) the old server left" in done


def test_a_live_server_of_the_cluster_keeps_its_lock(cluster_folder, tmp_path):
    service, spawn, _ = cluster_folder
    server = tmp_path / "postgres"  # a program the kernel names `postgres`
    shutil.copy(shutil.which("sleep"), server)
    live = spawn(str(server), service.data_dir)
    postmaster_pid = service.lock_files()[0]
    postmaster_pid.write_text(f"{live.pid}\n")
    assert service.clear_after_crash() is None
    assert postmaster_pid.exists() and live.poll() is None


def test_service_names_of_the_command_line_are_those_the_registry_builds(tmp_path, monkeypatch):
    from infra.config import load_environment, load_settings
    from infra.local.registry import build_services

    monkeypatch.setenv("TUNEOPS_CACHE_DIR", str(tmp_path))
    services = build_services(load_environment("local"), load_settings())
    assert list(services) == [name.value for name in ServiceName]
