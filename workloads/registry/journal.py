"""What a promote or rollback writes, journaled on its lock entry before it writes it.

A plan is every version tag and alias move of one promotion or rollback, in order. Its holder
records it on its lock entry (tag ``tuneops.lock.plan``, state ``pending``), writes it step by
step (checking the lock before each write, reading each alias back), and records it ``done``.
A holder that dies or fails half way leaves the plan ``pending``; whoever takes the lock next
finishes it first (every step is idempotent), so the aliases end as the gate decided.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from tuneops.core.errors import UserError
from workloads.registry.config import RegistryConfig
from workloads.registry.lock import RegistryLock
from workloads.registry.store import alias_version, mlflow_error

log = logging.getLogger(__name__)

PENDING, DONE = "pending", "done"


@dataclass
class Plan:
    action: str  # "promote v3", "rollback to v2"
    # (version, key, value): written first, so a version never leads before its record does.
    tags: list[tuple[str, str, str]] = field(default_factory=list)
    # (alias, version): moved in this order; None removes the alias.
    aliases: list[tuple[str, str | None]] = field(default_factory=list)
    state: str = PENDING

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Plan | None:
        try:
            data = json.loads(text)
            return cls(
                action=str(data["action"]),
                tags=[(str(v), str(k), str(val)) for v, k, val in data["tags"]],
                aliases=[(str(a), None if v is None else str(v)) for a, v in data["aliases"]],
                state=str(data["state"]),
            )
        except (ValueError, KeyError, TypeError):
            return None

    def summary(self) -> str:
        return ", ".join(f"{a} {'v' + v if v else 'removed'}" for a, v in self.aliases)


def _confirm(client: Any, config: RegistryConfig, alias: str, version: str | None) -> None:
    """Read an alias back (after ``lock.settle_s``) and fail if it is not what was written."""
    if config.lock.settle_s:
        time.sleep(config.lock.settle_s)
    found = alias_version(client, config.name, alias)
    got = found.version if found else None
    if got != version:
        raise UserError(
            f"{config.name}: alias {alias!r} reads back {'v' + got if got else 'unset'} after it "
            f"was set to {'v' + version if version else 'unset'}; something else moved it. The "
            "next promote or rollback finishes this one"
        )


def carry_out(client: Any, config: RegistryConfig, lock: RegistryLock, plan: Plan) -> None:
    """Journal ``plan`` on the lock entry, write it step by step, then record it done."""
    name = config.name
    lock.set_tag("plan", plan.to_json())
    try:
        for version, key, value in plan.tags:
            lock.check()
            client.set_model_version_tag(name, version, key, value)
        for alias, version in plan.aliases:
            lock.check()
            if version is None:
                client.delete_registered_model_alias(name, alias)
            else:
                client.set_registered_model_alias(name, alias, version)
            _confirm(client, config, alias, version)
    except mlflow_error() as exc:
        raise UserError(
            f"{plan.action} of {name} stopped half way ({exc}); the next promote or rollback "
            "finishes it"
        ) from exc
    plan.state = DONE
    lock.set_tag("plan", plan.to_json())


def finish_interrupted(client: Any, config: RegistryConfig, lock: RegistryLock) -> Plan | None:
    """Finish the plan the previous holder left pending, if any; returns it."""
    before = lock.replaced
    text = before.tag("plan") if before else None
    plan = Plan.from_json(text) if text else None
    if before is None or plan is None or plan.state == DONE:
        return None
    carry_out(client, config, lock, Plan(plan.action, plan.tags, plan.aliases))
    log.warning(
        "finished the interrupted %s of %s left by %s: %s",
        plan.action,
        config.name,
        before.owner,
        plan.summary(),
    )
    return plan


@contextmanager
def promotion_lock(
    client: Any, config: RegistryConfig, command: str, *, break_owner: str | None = None
) -> Iterator[RegistryLock]:
    """Hold the promotion lock: finish what a previous holder left half done, yield, release."""
    lock = RegistryLock(client, config, command, break_owner=break_owner).acquire()
    outcome = "failed"
    try:
        finish_interrupted(client, config, lock)
        lock.forget_older()
        yield lock
        outcome = "done"
    except UserError as exc:
        outcome = f"{type(exc).__name__}: {exc}"[:1000]
        raise
    finally:
        lock.release(outcome)
