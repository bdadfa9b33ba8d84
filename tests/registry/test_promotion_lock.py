"""The promotion lock against a real MLflow store (SQLite): taking, refusing, expiring, breaking,
fencing, and finishing a plan a holder left half done. Subprocess races against a tracking
server are in test_concurrent_promote.py."""

from __future__ import annotations

import logging
import time

import pytest

from tuneops.core.errors import UserError
from workloads.registry.lock import RegistryLock

GOOD = {"key_fact_recall": 0.50, "rouge_l": 0.30, "chrf": 35.0, "runaway_rate": 0.10}
BASE = {"key_fact_recall": 0.30, "rouge_l": 0.20, "chrf": 30.0, "runaway_rate": 0.20}


def _lock(config, command="promote v9", **kwargs):
    from workloads.registry.lock import RegistryLock
    from workloads.registry.store import client_for

    return RegistryLock(client_for(config), config, command, **kwargs)


def _with(config, **lock):
    return config.model_copy(update={"lock": config.lock.model_copy(update=lock)})


def test_second_taker_is_refused_naming_the_holder_and_release_frees_it(registry_config):
    from workloads.registry.lock import LockHeldError

    first = _lock(registry_config).acquire()
    with pytest.raises(LockHeldError) as held:
        _lock(registry_config, "rollback").acquire()
    message = str(held.value)
    assert held.value.exit_code == 5
    assert f"is held by {first.owner} (promote v9, pid " in message
    assert f"--break-lock {first.owner}" in message
    assert "\n" not in message

    first.release("done")
    second = _lock(registry_config, "rollback").acquire()
    second.forget_older()
    chain = second.entries()
    # Only the newest entry is kept; it is the second holder's.
    assert [e.epoch for e in chain] == [2]
    assert chain[0].owner == second.owner and chain[0].tag("took_over") is None
    second.release("done")
    assert second.entries()[0].released


def test_expired_lock_is_taken_over_and_the_old_holder_is_fenced(registry_config, caplog):
    from workloads.registry.lock import LockLostError

    stale = _lock(_with(registry_config, ttl_s=0.5)).acquire()
    time.sleep(0.6)
    with caplog.at_level(logging.WARNING, logger="workloads.registry.lock"):
        taker = _lock(registry_config, "rollback").acquire()
    assert f"took over the promotion lock of cloudops-assistant from {stale.owner}" in caplog.text
    assert taker.entries()[-1].tag("took_over") == stale.owner
    # The old holder writes nothing more: its lease ran out, and a newer entry exists.
    with pytest.raises(LockLostError, match="ran out"):
        stale.check()
    stale.expires_at = time.time() + 60  # even with a clock that says the lease is still good
    with pytest.raises(LockLostError, match=f"taken over by {taker.owner}"):
        stale.check()
    taker.check()  # the new holder may write


def test_break_lock_needs_the_holders_owner_id(registry_config, caplog):
    from workloads.registry.lock import LockHeldError

    holder = _lock(registry_config).acquire()
    with pytest.raises(UserError, match=f"held by {holder.owner} .*not someone-else; nothing"):
        _lock(registry_config, break_owner="someone-else").acquire()
    with pytest.raises(LockHeldError):
        _lock(registry_config).acquire()
    with caplog.at_level(logging.WARNING, logger="workloads.registry.lock"):
        breaker = _lock(registry_config, break_owner=holder.owner).acquire()
    assert f"broke the promotion lock of cloudops-assistant held by {holder.owner}" in caplog.text
    assert breaker.entries()[-1].owner == breaker.owner


class SlowReader(RegistryLock):
    """A taker whose first read of the chain is an old one it was handed (``seen``)."""

    def __init__(self, *args, seen, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen, self.calls = seen, 0

    def entries(self):
        self.calls += 1
        return self.seen if self.calls == 1 else super().entries()


def test_a_reader_that_saw_an_old_chain_holds_nothing(registry_config):
    """A process that read entry N, stalled while N+1 and N+2 came and went, then created N+1
    again, must find that it is not the newest and give up without writing."""
    from workloads.registry.lock import LockHeldError
    from workloads.registry.store import client_for

    first = _lock(registry_config).acquire()
    first.release("done")
    seen = first.entries()  # what the slow reader read: entry 1, released
    for _ in range(2):
        newer = _lock(registry_config).acquire()
        newer.forget_older()
        newer.release("done")
    holder = _lock(registry_config).acquire()
    holder.forget_older()
    slow = SlowReader(client_for(registry_config), registry_config, "promote v8", seen=seen)
    with pytest.raises(LockHeldError, match=f"held by {holder.owner}"):
        slow.acquire()
    assert [e.owner for e in holder.entries()] == [holder.owner]  # its stray entry is gone
    holder.check()


def test_a_pending_plan_is_finished_by_the_next_holder(registry_config, client, make_run, caplog):
    from workloads.registry.journal import Plan, promotion_lock
    from workloads.registry.registry import promote, register

    name = registry_config.name
    v1 = register(registry_config, make_run({"candidate": GOOD, "base": BASE}), client=client)
    promote(registry_config, client=client)
    v2 = register(registry_config, make_run({"candidate": GOOD, "base": BASE}), client=client)

    # A holder journals its promotion of v2 and dies before writing any of it.
    dead = _lock(registry_config, "promote v2").acquire()
    plan = Plan(
        "promote v2",
        tags=[(v2.version, "tuneops.gate", "passed")],
        aliases=[("champion", v2.version), ("previous", v1.version)],
    )
    dead.set_tag("plan", plan.to_json())

    held = promotion_lock(client, registry_config, "rollback", break_owner=dead.owner)
    with caplog.at_level(logging.WARNING), held as lock:
        # Finished before the new holder's own work, and journaled as done on its entry.
        assert '"state": "done"' in lock.entries()[-1].tag("plan")
        assert lock.replaced is not None and lock.replaced.owner == dead.owner
    assert f"finished the interrupted promote v2 of {name} left by {dead.owner}" in caplog.text
    assert "champion v2, previous v1" in caplog.text
    assert str(client.get_model_version_by_alias(name, "champion").version) == v2.version
    assert str(client.get_model_version_by_alias(name, "previous").version) == v1.version
    assert client.get_model_version(name, v2.version).tags["tuneops.gate"] == "passed"


def test_rollback_and_promote_record_outcomes_and_refuse_while_held(
    registry_config, client, make_run
):
    from workloads.registry.gate import GateRefusedError
    from workloads.registry.lock import LockHeldError
    from workloads.registry.registry import promote, register, rollback

    register(registry_config, make_run({"candidate": GOOD, "base": BASE}), client=client)
    promote(registry_config, client=client)
    register(registry_config, make_run({"candidate": GOOD, "base": BASE}), client=client)
    holder = _lock(registry_config).acquire()
    with pytest.raises(LockHeldError):
        promote(registry_config, client=client)
    with pytest.raises(LockHeldError):
        rollback(registry_config, client=client)
    # A dry run takes no lock.
    assert promote(registry_config, dry_run=True, client=client).passed
    holder.release("done")

    promote(registry_config, client=client)
    entry = holder.entries()[-1]
    assert entry.released and entry.tag("outcome") == "done"
    assert '"action": "promote v2"' in entry.tag("plan")

    worse = dict(GOOD, rouge_l=0.10)
    register(registry_config, make_run({"candidate": worse, "base": BASE}), client=client)
    with pytest.raises(GateRefusedError) as refused:
        promote(registry_config, client=client)
    assert refused.value.decision is not None and not refused.value.decision.passed
    entry = holder.entries()[-1]
    assert entry.released and entry.tag("outcome").startswith("GateRefusedError: promotion of")
