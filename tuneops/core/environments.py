"""The environments every command speaks of: ``local``, ``dev``, ``staging``, ``prod``.

An environment exists when ``configs/infra/environments/<name>.yaml`` does. Every command takes
it the same way, ``--env NAME``, and every config overlay (``<config>.<env>.yaml``) is named
after one, so a misspelt name is refused here with the list of known ones instead of being
silently skipped.
"""

from __future__ import annotations

from tuneops.core.errors import UserError
from tuneops.core.paths import CONFIG_DIR

ENVIRONMENTS_DIR = CONFIG_DIR / "infra" / "environments"


def environment_names() -> list[str]:
    """The known environments, sorted."""
    return sorted(p.stem for p in ENVIRONMENTS_DIR.glob("*.yaml"))


def check_environment(name: str) -> str:
    """Return ``name`` when it is a known environment; otherwise one error listing them."""
    known = environment_names()
    if name not in known:
        raise UserError(f"unknown environment {name!r}; known: {', '.join(known) or 'none'}")
    return name


def refuse_positional_env(value: str | None, command: str) -> None:
    """The old spelling ``tuneops <command> ENV`` is refused with the new one named."""
    if value is not None:
        raise UserError(
            f"the environment is now an option: `tuneops {command} --env {value}` "
            f"(every command takes --env)"
        )
