"""The state locks of an environment: who holds one, and the way out when a run died holding it.

Each stack's state is ``s3://<state.bucket>/<state key>`` and Terraform's native S3 lock is the
object ``<state key>.tflock`` beside it (``use_lockfile = true``), written with a conditional
put and holding Terraform's lock info as JSON (``ID``, ``Operation``, ``Who``, ``Version``,
``Created``, ``Path``). A Terraform that dies, or loses its AWS, during a run leaves that object
behind and, when it could not write its state either, the state it had in ``errored.tfstate``
in the stack's folder. ``unlock`` shows who holds each lock, asks, then releases it with
``terraform force-unlock`` and pushes the unsaved state with ``terraform state push``, which
is what Terraform's own messages tell a user to do.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from tuneops.core.errors import UserError

if TYPE_CHECKING:
    from infra.config import Environment
    from infra.ops import Runner

LOCK_SUFFIX = ".tflock"
ERRORED_STATE = "errored.tfstate"  # where Terraform writes a state it could not save
LOCK_ERROR = "Error acquiring the state lock"
_FIELD = re.compile(r"^\s*(ID|Path|Operation|Who|Version|Created|Info):[ \t]*(.*)$", re.M)


@dataclass(frozen=True)
class LockInfo:
    """Terraform's lock info (what ``Lock Info:`` lists in its errors)."""

    id: str
    who: str = ""
    operation: str = ""
    created: str = ""
    path: str = ""
    version: str = ""

    @classmethod
    def from_json(cls, data: dict) -> LockInfo:
        """From the lock object's body."""
        return cls(
            id=str(data.get("ID", "")),
            who=str(data.get("Who", "")),
            operation=str(data.get("Operation", "")),
            created=str(data.get("Created", "")),
            path=str(data.get("Path", "")),
            version=str(data.get("Version", "")),
        )

    @classmethod
    def from_text(cls, text: str) -> LockInfo | None:
        """From the ``Lock Info:`` block of Terraform's error, or None without one."""
        if "Lock Info:" not in text:
            return None
        block = text.split("Lock Info:", 1)[1]
        fields = {name: value.strip() for name, value in _FIELD.findall(block)}
        if not fields.get("ID"):
            return None
        return cls.from_json(fields)

    @property
    def operation_name(self) -> str:
        """``OperationTypeApply`` -> ``apply``."""
        return self.operation.removeprefix("OperationType").lower() or "unknown operation"

    def since(self) -> str:
        """When the lock was taken, in UTC to the second, and how long ago."""
        taken = _parse_time(self.created)
        if taken is None:
            return self.created or "an unknown time"
        minutes = int((datetime.now(UTC) - taken).total_seconds() // 60)
        ago = f"{minutes} min ago" if minutes < 120 else f"{minutes // 60} h ago"
        return f"{taken:%Y-%m-%d %H:%M:%S} UTC ({ago})"

    def owner(self) -> str:
        """Who holds it, since when, doing what, under which lock ID."""
        return (
            f"{self.who or 'an unknown owner'} since {self.since()} "
            f"(terraform {self.operation_name}, lock ID {self.id})"
        )


def _parse_time(value: str) -> datetime | None:
    """Terraform writes ``2026-11-30T22:13:44.125147246Z`` in the lock object and
    ``2026-11-30 22:13:44.125147246 +0000 UTC`` in its errors."""
    match = re.match(r"(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)", value.strip())
    if not match:
        return None
    return datetime.fromisoformat(f"{match[1]}T{match[2]}+00:00")


def unlock_command(env_name: str) -> str:
    return f"tuneops infra unlock --env {env_name}"


class StateLockedError(UserError):
    """The state of a stack is locked by another run, live or dead: one line saying by whom,
    since when, and how to release it (and that the run's unsaved state is kept, if so)."""

    def __init__(
        self, env_name: str, stack_name: str, lock: LockInfo, unsaved: Path | None = None
    ) -> None:
        self.lock = lock
        kept = f"; the state that run could not save is in {unsaved}" if unsaved else ""
        action = "release it and push that state" if unsaved else "release it"
        super().__init__(
            f"{LOCK_ERROR} of {stack_name}: held by {lock.owner()}{kept}; if no other "
            f"Terraform still runs against {env_name}, {action} with "
            f"`{unlock_command(env_name)}`"
        )


def errored_state(outdir: Path, env: Environment, stack: str) -> Path:
    """The state Terraform could not save, in the stack's folder (its working directory)."""
    return outdir / "stacks" / env.stack_name(stack) / ERRORED_STATE


def lock_key(env: Environment, stack: str) -> str:
    return env.state_key(stack) + LOCK_SUFFIX


def held_locks(env: Environment, stacks: list[str]) -> dict[str, LockInfo]:
    """The lock objects present in the state bucket, by stack."""
    from botocore.exceptions import ClientError

    from infra.bootstrap import clients

    s3, _ = clients(env)
    found: dict[str, LockInfo] = {}
    for stack in stacks:
        try:
            body = s3.get_object(Bucket=env.state.bucket, Key=lock_key(env, stack))["Body"]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("NoSuchKey", "404"):
                continue
            raise UserError(
                f"cannot read the state lock s3://{env.state.bucket}/{lock_key(env, stack)} "
                f"({code}): the credentials of {env.name} need s3:GetObject on the state bucket"
            ) from exc
        raw = body.read()
        try:
            found[stack] = LockInfo.from_json(json.loads(raw))
        except (json.JSONDecodeError, AttributeError) as exc:
            raise UserError(
                f"the lock object s3://{env.state.bucket}/{lock_key(env, stack)} is not "
                f"Terraform's lock info ({raw[:80]!r}); inspect it before removing it by hand"
            ) from exc
    return found


@dataclass
class UnlockResult:
    released: dict[str, LockInfo]
    pushed: list[str]
    discarded_plans: int


def unlock(
    runner: Runner, *, yes: bool, interactive: bool, ask: Callable[[str], bool]
) -> UnlockResult:
    """Show every held lock and unsaved state of ``runner``'s environment, ask (``yes``
    skips; refused without a terminal), then release the locks and push the states."""
    env = runner.env
    stacks = [s for s in runner.order() if runner.plannable(s)]
    runner.preflight()
    locks = held_locks(env, stacks)
    unsaved = [s for s in stacks if errored_state(runner.outdir, env, s).is_file()]
    if not locks and not unsaved:
        runner.say(f"unlock {env.name}: no state lock is held and no unsaved state is left")
        return UnlockResult({}, [], 0)
    for stack, lock in locks.items():
        runner.say(f"{env.stack_name(stack)}: locked by {lock.owner()}")
    for stack in unsaved:
        path = errored_state(runner.outdir, env, stack)
        runner.say(f"{env.stack_name(stack)}: state Terraform could not save: {path}")
    _confirm(env.name, locks, unsaved, yes=yes, interactive=interactive, ask=ask)
    if not all(runner.synthesized(s) for s in stacks):
        runner.synth()
    for stack, lock in locks.items():
        tf = runner.terraform(stack)
        tf.init()
        tf.force_unlock(lock.id)
        runner.say(f"{env.stack_name(stack)}: lock {lock.id} released")
    for stack in unsaved:
        tf = runner.terraform(stack)
        tf.init()
        kept = tf.push_errored_state()
        runner.say(f"{env.stack_name(stack)}: unsaved state pushed (the file is kept as {kept})")
    discarded = _discard_plans(runner, stacks)
    runner.say(
        f"unlock {env.name}: {len(locks)} lock(s) released, {len(unsaved)} state(s) pushed, "
        f"{discarded} saved plan(s) discarded (made before; `tuneops infra apply --env "
        f"{env.name}` plans again)"
    )
    return UnlockResult(locks, unsaved, discarded)


def _confirm(
    env_name: str,
    locks: dict[str, LockInfo],
    unsaved: list[str],
    *,
    yes: bool,
    interactive: bool,
    ask: Callable[[str], bool],
) -> None:
    if yes:
        return
    what = f"{len(locks)} lock(s)" + (
        f" and push {len(unsaved)} unsaved state(s)" if unsaved else ""
    )
    if not interactive:
        raise UserError(
            f"not releasing {what} of {env_name} without confirmation and there is no terminal "
            f"to ask on: check that no Terraform still runs against {env_name}, then run "
            f"`{unlock_command(env_name)} --yes`"
        )
    if not ask(f"release {what} of {env_name}? Only if no Terraform still runs against it"):
        raise UserError(f"unlock of {env_name} not confirmed; nothing was released")


def _discard_plans(runner: Runner, stacks: list[str]) -> int:
    """Saved plans were made against the state as it was before: drop them."""
    count = 0
    for stack in stacks:
        tf = runner.terraform(stack)
        if tf.plan_file.is_file():
            tf.discard_plan()
            count += 1
    return count


def keep_pushed_state(path: Path, stack_name: str) -> Path:
    """Move a pushed ``errored.tfstate`` out of the stack's folder into the cache, so it is
    never pushed twice; returns where it went."""
    from infra.terraform import infra_cache

    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = infra_cache() / "pushed-states" / f"{stack_name}-{stamp}.tfstate"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(path), target)
    return target
