"""The seam to the platform's policy gate for Kubernetes manifests.

The gate (checkov with the project's custom checks) belongs to the infrastructure layer, which
``workloads`` does not import at module level: it is looked up by name when a render runs. A
gate that reports failures stops the render before any file is replaced.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from tuneops.core.errors import UserError

log = logging.getLogger(__name__)

GATE_MODULE = "infra.policy"
GATE_FUNCTION = "check_manifests"


def find_gate() -> Callable[[Sequence[Path]], object] | None:
    try:
        module = importlib.import_module(GATE_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name and GATE_MODULE.startswith(exc.name):
            return None
        raise
    return getattr(module, GATE_FUNCTION, None)


def run_policy_gate(paths: Sequence[Path]) -> str:
    """Run the gate over ``paths``; return a one-line note of what it did."""
    gate = find_gate()
    if gate is None:
        log.warning(
            "policy gate %s.%s is not available; manifests were schema-checked only",
            GATE_MODULE,
            GATE_FUNCTION,
        )
        return f"not available ({GATE_MODULE}.{GATE_FUNCTION} missing)"
    result = gate([Path(p) for p in paths])
    failures = _failures(result)
    if failures:
        shown = "; ".join(failures[:5])
        more = f" (+{len(failures) - 5} more)" if len(failures) > 5 else ""
        raise UserError(f"policy gate refused the manifests: {shown}{more}")
    summary = getattr(result, "summary", None)
    return summary() if callable(summary) else f"passed ({len(paths)} files)"


def _failures(result: object) -> list[str]:
    """The gate's failures: a list of them, or a report with ``ok`` and ``failures``."""
    if result is None:
        return []
    if isinstance(result, (list, tuple)):
        return [str(f) for f in result]
    if getattr(result, "ok", True):
        return []
    failures = [str(f) for f in getattr(result, "failures", None) or []]
    return failures or [str(result)]
