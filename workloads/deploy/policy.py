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

from tuneops.errors import UserError

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
    return f"passed ({len(paths)} files)"


def _failures(result: object) -> list[str]:
    """Accept the gate's report as a list of failures, or an object with ``failed``/``ok``."""
    if result is None:
        return []
    failed = getattr(result, "failed", None)
    if failed is None and isinstance(result, dict):
        failed = result.get("failed")
    if failed is None and isinstance(result, (list, tuple)):
        failed = result
    if failed is None:
        ok = getattr(result, "ok", True)
        return [] if ok else [str(result)]
    return [str(f) for f in failed]
