"""The project's lock files: read and write them.

A lock file pins every package as ``name==version`` followed by the sha256 of each file pip may
install for it, in the form ``pip install --require-hashes -r FILE`` reads::

    absl-py==2.5.1 \\
        --hash=sha256:721200f2...

``read_lock`` also reads plain pins (``pip freeze`` output, no hashes): ``scripts/lock.py``
starts from those.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tuneops.core.errors import UserError
from tuneops.core.io import atomic_write_text
from tuneops.core.paths import REPO_ROOT

# Every lock file of the project, by what it is for (see docs/supply-chain.md).
LOCKS = {
    "build": REPO_ROOT / "requirements-build.lock",
    "workloads": REPO_ROOT / "requirements.lock",
    "dev": REPO_ROOT / "requirements-dev.lock",
    "nodeps": REPO_ROOT / "requirements-nodeps.lock",
    "gpu": REPO_ROOT / "requirements-gpu.lock",
    "policy": REPO_ROOT / "requirements-policy.lock",
}
# The locks of the project's own environment and images; the policy lock is a venv of its own.
PROJECT_LOCKS = ("build", "workloads", "dev", "nodeps", "gpu")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)$")
_HASH = re.compile(r"^--hash=(sha256:[0-9a-f]{64})$")


def canonical(name: str) -> str:
    """The normalized project name (PEP 503): ``PyYAML`` and ``pyyaml`` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    hashes: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return canonical(self.name)

    def render(self) -> str:
        if not self.hashes:
            return f"{self.name}=={self.version}"
        lines = [f"{self.name}=={self.version}", *(f"    --hash={h}" for h in self.hashes)]
        return " \\\n".join(lines)


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Lines with their backslash continuations joined and comments dropped."""
    out: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined = (pending + line).strip()
        pending = ""
        if joined:
            out.append((start, joined))
    return out


def parse_lock(text: str, source: str = "lock") -> list[Pin]:
    """The pins of a lock file (or of ``pip freeze`` output); one ``UserError`` on a bad line."""
    pins = []
    for number, line in _logical_lines(text):
        words = line.split()
        match = _PIN.match(words[0])
        hashes = [_HASH.match(w) for w in words[1:]]
        if not match or not all(hashes):
            raise UserError(
                f"{source}:{number}: expected `name==version` and `--hash=sha256:...` options, "
                f"got {line[:80]!r}"
            )
        pins.append(Pin(match[1], match[2], tuple(h[1] for h in hashes if h)))
    return pins


def read_lock(path: Path) -> list[Pin]:
    if not path.is_file():
        raise UserError(f"no lock file {path}: run `make lock`")
    return parse_lock(path.read_text(encoding="utf-8"), str(path))


def pins_by_key(pins: list[Pin]) -> dict[str, Pin]:
    return {p.key: p for p in pins}


def render_lock(pins: list[Pin], header: str) -> str:
    body = "\n".join(p.render() for p in sorted(pins, key=lambda p: p.key))
    comments = "\n".join(f"# {line}".rstrip() for line in header.strip().splitlines())
    return f"{comments}\n{body}\n"


def write_lock(path: Path, pins: list[Pin], header: str) -> Path:
    return atomic_write_text(path, render_lock(pins, header))
