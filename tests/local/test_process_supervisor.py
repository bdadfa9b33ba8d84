"""The one process supervisor the local services and the model-server helper are built on."""

from __future__ import annotations

import signal
import sys

import pytest

from tuneops.core.errors import UserError
from tuneops.core.process import Supervisor, free_port, http_ok, pid_alive, port_in_use


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_starts_waits_for_health_logs_records_the_pid_and_stops(tmp_path):
    port = free_port()
    files = Supervisor(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        name="files",
        log_path=tmp_path / "files.log",
        pid_file=tmp_path / "pid",
        cwd=tmp_path,
        health_url=f"http://127.0.0.1:{port}/",
        start_timeout=30,
    )
    with files:
        assert files.healthy() and http_ok(f"http://127.0.0.1:{port}/")
        assert int((tmp_path / "pid").read_text()) == files.pid() == files.proc.pid
    assert files.proc.returncode == -signal.SIGTERM
    assert not files.running() and not (tmp_path / "pid").exists()
    assert not port_in_use("127.0.0.1", port)
    assert "GET / HTTP" in (tmp_path / "files.log").read_text()


def test_another_supervisor_finds_the_process_by_its_pid_file_and_stops_its_group(tmp_path):
    started = Supervisor(
        _python("import time; time.sleep(120)"),
        name="sleeper",
        log_path=tmp_path / "log",
        append_log=True,
        pid_file=tmp_path / "pid",
        ready=lambda: True,
        new_session=True,
    ).start()
    pid = started.pid()
    later = Supervisor(name="sleeper", pid_file=tmp_path / "pid", new_session=True)
    assert later.pid() == pid and later.running()
    assert later.stop(timeout=10) is None  # not its child: no exit code to report
    assert not pid_alive(pid) and not (tmp_path / "pid").exists()
    assert (tmp_path / "log").read_text().startswith("\n--- start ")


def test_a_process_that_exits_before_it_is_ready_is_one_error_with_its_log(tmp_path):
    crashing = Supervisor(
        _python("print('missing config file', flush=True); raise SystemExit(3)"),
        name="crasher",
        pid_file=tmp_path / "pid",
        health_url=f"http://127.0.0.1:{free_port()}/",
    )
    with pytest.raises(UserError, match="crasher exited with code 3 before it was ready") as err:
        crashing.start()
    assert "missing config file" in str(err.value)
    assert not (tmp_path / "pid").exists()
    assert crashing.log_path.name.startswith("tuneops-crasher-")  # a log of its own


def test_never_ready_times_out_and_a_process_ignoring_sigterm_is_killed(tmp_path):
    never = Supervisor(
        _python("import time; time.sleep(120)"), name="slow", ready=lambda: False, start_timeout=1
    )
    with pytest.raises(UserError, match="slow was not ready within 1 s"):
        never.start()
    assert never.proc.poll() is not None

    stubborn = Supervisor(
        _python(
            "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('up', flush=True); time.sleep(120)"
        ),
        name="stubborn",
        log_path=tmp_path / "log",
        ready=lambda: (tmp_path / "log").read_text().startswith("up"),
    ).start()
    assert stubborn.stop(timeout=1) == -signal.SIGKILL
