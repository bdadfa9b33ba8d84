"""The promotion lock: one ``promote`` or ``rollback`` at a time, held by the MLflow registry.

MLflow writes tags and aliases as unconditional upserts (last writer wins, on the SQL store and
through the REST API alike), and offers no conditional write on them. The one write it refuses
to repeat is creating a registered model: the name is the table's primary key, so of two
creates of one name exactly one succeeds and the other gets ``RESOURCE_ALREADY_EXISTS``. The
lock is built on that alone, so it works on any tracking server and on a local SQLite store.

The lock is a chain of entries, registered models ``<lock>.000001``, ``<lock>.000002``, ...;
only the newest counts. To take the lock, read the newest entry N. If it is released, held
past its expiry, or named by ``--break-lock``, create entry N+1 with a fresh owner id and the
holder's description in its tags (one create, one transaction). Whoever creates N+1 holds the
lock; everyone else who read N is refused, naming that holder. Release is a tag on the
holder's own entry. The next holder deletes the older entries; the newest is never deleted.

Before every write under the lock the holder checks that its entry is still the newest and its
lease has not run out (``check``); the only write that can escape it is the one in flight when
a holder that outlived its lease is taken over.
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tuneops.core.errors import UserError
from workloads.registry.config import RegistryConfig
from workloads.registry.store import mlflow_error

log = logging.getLogger(__name__)

TAG = "tuneops.lock."
DIGITS = 6
MISSING = "RESOURCE_DOES_NOT_EXIST"


class LockHeldError(UserError):
    """Another promote or rollback holds the lock (exit 5: try again later)."""

    exit_code = 5


class LockLostError(UserError):
    """The lock ran out or was taken over while held; nothing more was written."""

    exit_code = 5


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def _epoch(text: str | None) -> float:
    try:
        return datetime.fromisoformat(text or "").timestamp()
    except ValueError:
        return 0.0  # unreadable: treated as long expired


@dataclass(frozen=True)
class Entry:
    """One entry of the lock chain, as read from the registry."""

    name: str
    epoch: int
    tags: dict[str, str]

    def tag(self, key: str) -> str | None:
        return self.tags.get(TAG + key)

    @property
    def owner(self) -> str:
        return self.tag("owner") or "unknown"

    @property
    def released(self) -> bool:
        return self.tag("released_at") is not None

    @property
    def expires_at(self) -> float:
        return _epoch(self.tag("expires_at"))

    def expired(self) -> bool:
        return time.time() >= self.expires_at

    def describe(self) -> str:
        """``<owner> (tuneops promote v3, pid 12 on host-a, user bob) since ..., until ...``"""
        who = (
            f"{self.tag('command')}, pid {self.tag('pid')} on {self.tag('host')}, "
            f"user {self.tag('user')}"
        )
        since, until = self.tag("acquired_at"), self.tag("expires_at")
        return f"{self.owner} ({who}) since {since}, until {until}"


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


class RegistryLock:
    """The promotion lock of one registered model (see the module docstring)."""

    def __init__(
        self, client: Any, config: RegistryConfig, command: str, *, break_owner: str | None = None
    ) -> None:
        self.client = client
        self.model = config.name
        self.name = config.lock_name
        if "'" in self.name:
            raise UserError(f"lock name {self.name!r}: MLflow cannot search a quote; set lock.name")
        self.ttl_s = config.lock.ttl_s
        self.command = command
        self.break_owner = break_owner
        self.owner = uuid.uuid4().hex[:12]
        self.entry: Entry | None = None
        self.replaced: Entry | None = None  # the newest entry before this one
        self.expires_at = 0.0
        self._older: list[Entry] = []

    # -- reading the chain ----------------------------------------------------------------
    def entry_name(self, epoch: int) -> str:
        return f"{self.name}.{epoch:0{DIGITS}d}"

    def entries(self) -> list[Entry]:
        """Every entry of the chain, oldest first."""
        prefix = f"{self.name}."
        try:
            found = self.client.search_registered_models(
                filter_string=f"name LIKE '{prefix}%'", max_results=1000
            )
        except mlflow_error() as exc:
            raise UserError(f"cannot read the promotion lock {self.name}: {exc}") from exc
        chain = [
            Entry(rm.name, int(rm.name[len(prefix) :]), dict(rm.tags))
            for rm in found
            if rm.name.startswith(prefix) and rm.name[len(prefix) :].isdigit()
        ]
        return sorted(chain, key=lambda e: e.epoch)

    def read(self, epoch: int) -> Entry | None:
        try:
            rm = self.client.get_registered_model(self.entry_name(epoch))
        except mlflow_error() as exc:
            if exc.error_code == MISSING:
                return None
            raise UserError(f"cannot read the promotion lock {self.name}: {exc}") from exc
        return Entry(rm.name, epoch, dict(rm.tags))

    def held_message(self, holder: Entry) -> str:
        return (
            f"the promotion lock of {self.model} is held by {holder.describe()}; try again "
            f"when it is released, or if that process is gone, add `--break-lock {holder.owner}`"
        )

    # -- taking and giving back -----------------------------------------------------------
    def _may_take(self, newest: Entry | None) -> str | None:
        """Refuse unless ``newest`` is free, expired, or the holder ``--break-lock`` names;
        returns what taking it means when it was held."""
        if newest is None or newest.released:
            if self.break_owner:
                log.warning("the promotion lock of %s is not held: nothing to break", self.model)
            return None
        if self.break_owner:
            if self.break_owner != newest.owner:
                raise UserError(
                    f"--break-lock {self.break_owner}: the promotion lock of {self.model} is "
                    f"held by {newest.describe()}, not {self.break_owner}; nothing broken"
                )
            return f"broke the promotion lock of {self.model} held by {newest.describe()}"
        if not newest.expired():
            raise LockHeldError(self.held_message(newest))
        return (
            f"took over the promotion lock of {self.model} from {newest.describe()}: its lease "
            "ran out (a holder that dies keeps the lock until then)"
        )

    def _tags(self, now: float, newest: Entry | None) -> dict[str, str]:
        tags = {
            "owner": self.owner,
            "command": self.command,
            "host": socket.gethostname(),
            "pid": str(os.getpid()),
            "user": _user(),
            "acquired_at": iso(now),
            "expires_at": iso(now + self.ttl_s),
        }
        if newest is not None and not newest.released:
            tags["took_over"] = newest.owner
        return {TAG + key: value for key, value in tags.items()}

    def acquire(self) -> RegistryLock:
        """Take the lock, or raise ``LockHeldError`` naming the holder."""
        chain = self.entries()
        newest = chain[-1] if chain else None
        takeover = self._may_take(newest)
        epoch = newest.epoch + 1 if newest else 1
        now = time.time()
        description = (
            f"Promotion lock of {self.model}, kept by `tuneops promote` and `tuneops rollback`. "
            "Do not edit or delete: `--break-lock OWNER` frees a lock whose holder is gone."
        )
        tags = self._tags(now, newest)
        try:
            self.client.create_registered_model(
                self.entry_name(epoch), tags=tags, description=description
            )
        except mlflow_error() as exc:
            # Someone else created this entry first (or this create's reply was lost).
            winner = self.read(epoch)
            if winner is None:  # created and already superseded, or the create itself failed
                chain = self.entries()
                if chain and chain[-1].epoch > epoch:
                    raise LockHeldError(self.held_message(chain[-1])) from None
                raise UserError(f"cannot take the promotion lock {self.name}: {exc}") from exc
            if winner.owner != self.owner:
                raise LockHeldError(self.held_message(winner)) from None
        self.entry = Entry(self.entry_name(epoch), epoch, tags)
        self.replaced, self.expires_at, self._older = newest, now + self.ttl_s, chain
        self._still_newest()
        if takeover:
            log.warning("%s", takeover)
        return self

    def _still_newest(self) -> None:
        """A reader that stalled past later entries may create a stale one: it holds nothing."""
        assert self.entry is not None
        chain = self.entries()
        if chain and chain[-1].epoch != self.entry.epoch:
            self._delete(self.entry)
            if chain[-1].released:
                raise LockHeldError(
                    f"the promotion lock of {self.model} changed hands while this command "
                    "waited; nothing was written, try again"
                )
            raise LockHeldError(self.held_message(chain[-1]))

    def check(self) -> None:
        """Raise ``LockLostError`` unless this lock is still held: call before every write."""
        assert self.entry is not None, "check() before acquire()"
        if time.time() >= self.expires_at:
            raise LockLostError(
                f"the promotion lock of {self.model} ran out (lock.ttl_s={self.ttl_s:g}) before "
                f"this {self.command} finished; nothing more is written, and the next promote "
                "or rollback finishes what it started"
            )
        chain = self.entries()
        if not chain or chain[-1].epoch != self.entry.epoch:
            by = f" by {chain[-1].describe()}" if chain else ""
            raise LockLostError(
                f"the promotion lock of {self.model} was taken over{by}; nothing more is "
                f"written, and the new holder finishes what this {self.command} started"
            )

    def set_tag(self, key: str, value: str) -> None:
        """Write a tag on this lock's own entry (the journal), after ``check``."""
        assert self.entry is not None
        self.check()
        self.client.set_registered_model_tag(self.entry.name, TAG + key, value)

    def forget_older(self) -> None:
        """Delete the entries before this one (never the newest: see the module docstring)."""
        for entry in self._older:
            self._delete(entry)
        self._older = []

    def _delete(self, entry: Entry) -> None:
        try:
            self.client.delete_registered_model(entry.name)
        except mlflow_error() as exc:  # already gone, or no right to delete: it does no harm
            log.debug("could not delete lock entry %s: %s", entry.name, exc)

    def release(self, outcome: str) -> None:
        """Mark this lock's entry released; a failure only warns (the lease runs out anyway)."""
        if self.entry is None:
            return
        try:
            self.client.set_registered_model_tag(self.entry.name, TAG + "outcome", outcome)
            self.client.set_registered_model_tag(
                self.entry.name, TAG + "released_at", iso(time.time())
            )
        except Exception as exc:  # never hide the error that ended the critical section
            log.warning(
                "could not release the promotion lock of %s (%s); it frees itself at %s",
                self.model,
                exc,
                iso(self.expires_at),
            )
