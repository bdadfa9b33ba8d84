"""A clone of this repository carrying the checkout's current files, for tests that run the
project from somewhere else (a folder only its owner may enter, say)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tuneops.core.paths import REPO_ROOT


def clone_here(target: Path) -> None:
    """``git clone`` of this repository, then this checkout's tracked and new files on top."""
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(target)], check=True)
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        source = REPO_ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
