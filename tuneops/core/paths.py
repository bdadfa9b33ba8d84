"""Where the project keeps things. Every location can be moved with an environment variable."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "configs"


def cache_dir() -> Path:
    """Root of everything the project generates locally (models, datasets, runs, local env)."""
    path = Path(os.environ.get("TUNEOPS_CACHE_DIR", REPO_ROOT / ".cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI when set, else a SQLite store under the cache."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{cache_dir() / 'mlflow.db'}"
