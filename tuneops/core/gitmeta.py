"""Git metadata that runs, datasets and registered versions record: the commit they came from."""

from __future__ import annotations

import subprocess

from tuneops.core.paths import REPO_ROOT


def git_commit() -> str | None:
    """The checkout's HEAD commit, or None outside a git checkout (an image, a wheel)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
