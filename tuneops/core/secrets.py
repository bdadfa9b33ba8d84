"""Reading a bearer token the way every server of the project does: from an environment
variable, else from a file (a mounted Kubernetes Secret)."""

from __future__ import annotations

import os
from pathlib import Path

from tuneops.core.errors import UserError


def read_token(env_var: str | None, token_file: str | Path | None, setting: str) -> str | None:
    """The token from ``env_var`` when set and not blank, else from ``token_file``, else None.

    ``setting`` names the config key of the file in the one-line error for a missing or empty
    file (e.g. ``auth.token_file``)."""
    if env_var and os.environ.get(env_var, "").strip():
        return os.environ[env_var].strip()
    if token_file is None:
        return None
    path = Path(token_file)
    if not path.is_file():
        raise UserError(f"{setting} {path} does not exist (mount the secret there)")
    token = path.read_text(encoding="utf-8").strip()
    if not token:
        raise UserError(f"{setting} {path} is empty")
    return token
