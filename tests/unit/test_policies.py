"""Each write policy alone, against the in-memory fakes of tiercache.testing: no namespace, no
Redis."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

import tiercache as tc
from tiercache._engine.ops import run
from tiercache.errors import CapacityError, StoreError
from tiercache.policies import WriteBackJournal, WriteOutcome
from tiercache.testing import FakeJournalTier, FakeStore, FakeTarget, FakeTier
from tiercache.testing.fakes import context
from tiercache.testing.scheduler import ManualScheduler


def started(policy: Any, target: FakeTarget) -> Any:
    """The policy's run for ``target``, on a scheduler that never runs by itself."""
    return policy.start(target, ManualScheduler())


def plain_stack(store: bool = True) -> FakeTarget:
    """An in-process tier and a second in-process tier: nothing shared, maybe a store."""
    return FakeTarget([FakeTier("l1"), FakeTier("l2")], FakeStore() if store else None)


# -- WriteThrough ---------------------------------------------------------------------


def test_write_through_saves_first_then_drops_the_shared_copy() -> None:
    """WriteThrough with a store: save, then delete-on-write in shared tiers; L1 left to the
    namespace."""
    target = FakeTarget([FakeTier("l1"), FakeJournalTier("l2")], FakeStore())
    target.tiers[1].data[target.tier_key("k")] = b"old"
    policy = tc.WriteThrough()
    outcome = run(started(policy, target).write(context(target, {"k": 1}), target))
    assert outcome == WriteOutcome(fill_local=True)
    assert [e[0] for e in target.events] == ["save", "drop"]
    assert target.events[1][1] == 1  # only the shared tier
    assert target.store is not None and target.store.mapping == {"k": 1}
    assert target.tiers[1].data == {}


def test_write_through_store_failure_touches_no_tier() -> None:
    """A failing store raises StoreError before any tier is dropped or filled."""
    target = FakeTarget([FakeTier("l1"), FakeJournalTier("l2")], FakeStore())
    assert target.store is not None
    target.store.failing = True
    target.tiers[1].data["x"] = b"kept"
    with pytest.raises(StoreError):
        run(tc.WriteThrough().write(context(target, {"k": 1}), target))
    assert [e[0] for e in target.events] == ["save"]
    assert target.tiers[1].data == {"x": b"kept"}


def test_write_through_without_store_fills_the_shared_tier() -> None:
    """A pure cache: the shared copy is set (it is where other processes read it)."""
    target = FakeTarget([FakeTier("l1"), FakeJournalTier("l2")], None)
    outcome = run(tc.WriteThrough().write(context(target, {"k": 1}), target))
    assert outcome.fill_local and not outcome.announced
    assert target.events == [("fill", 1, [target.tier_key("k")])]
    assert target.tiers[1].data[target.tier_key("k")] == tc.MsgpackSerializer().dumps(1)


# -- WriteAround ----------------------------------------------------------------------


def test_write_around_saves_then_drops_every_copy() -> None:
    """WriteAround: the store is written, every tier's copy dropped, nothing filled."""
    target = FakeTarget([FakeTier("l1"), FakeJournalTier("l2")], FakeStore())
    outcome = run(tc.WriteAround().write(context(target, {"k": 1}), target))
    assert outcome == WriteOutcome(fill_local=False)
    assert [e[:2] for e in target.events] == [("save", ["'k'"]), ("drop", 0), ("drop", 1)]


@pytest.mark.parametrize("policy", [tc.WriteThrough(), tc.WriteAround()], ids=repr)
def test_delete_erases_the_store_then_drops_every_tier(policy: Any) -> None:
    """A synchronous delete: the store first, then every tier; a store failure stops it."""
    target = FakeTarget([FakeTier("l1"), FakeJournalTier("l2")], FakeStore({"k": 1}))
    key = target.tier_key("k")
    run(policy.delete(["k"], [key], target))
    assert [e[0] for e in target.events] == ["erase", "drop", "drop"]
    failing = FakeTarget([FakeTier("l1")], FakeStore({"k": 1}))
    assert failing.store is not None
    failing.store.failing = True
    with pytest.raises(StoreError):
        run(policy.delete(["k"], [key], failing))
    assert [e[0] for e in failing.events] == ["erase"]


# -- WriteBack: configuration -----------------------------------------------------------


def test_write_back_is_frozen_configuration_and_each_start_has_its_own_journal() -> None:
    """WriteBack cannot be mutated; start() gives each namespace a separate journal."""
    policy = tc.WriteBack(flush_interval=60)
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_pending = 3  # type: ignore[misc]
    a, b = plain_stack(), plain_stack()
    ja, jb = started(policy, a), started(policy, b)
    assert isinstance(ja, WriteBackJournal) and ja is not jb
    run(ja.write(context(a, {"k": 1}), a))
    assert list(ja.local) == ["s:k"] and jb.local == {}
    assert policy == tc.WriteBack(flush_interval=60) and hash(policy) == hash(
        tc.WriteBack(flush_interval=60)
    )


# -- WriteBack: the in-process journal ------------------------------------------------------


def test_write_back_journals_in_process_and_flushes_coalesced() -> None:
    """Writes wait in the journal (the store untouched); one flush writes each key's last value
    once."""
    target = plain_stack()
    journal = started(tc.WriteBack(flush_interval=60), target)
    for value in (1, 2, 3):
        outcome = run(journal.write(context(target, {"k": value, "j": -value}), target))
        assert outcome == WriteOutcome(fill_local=True)
    assert target.events == []  # no store write, no shared tier to fill
    assert run(journal.pending(["s:k", "s:j", "s:none"], target)) == {0: 3, 1: -3}
    assert run(journal.flush(target)) == (False, 0)
    assert target.store is not None
    assert target.store.saves == [{"k": 3, "j": -3}]
    assert journal.local == {} and journal.counters()["flushed"] == 2


def test_write_back_delete_is_a_pending_tombstone() -> None:
    """A delete is journaled (pending reads it as MISSING), drops the copies, and erases on
    flush."""
    target = FakeTarget([FakeTier("l1")], FakeStore({"k": 1}))
    journal = started(tc.WriteBack(flush_interval=60), target)
    key = target.tier_key("k")
    run(journal.delete(["k"], [key], target))
    assert run(journal.pending(["s:k"], target)) == {0: tc.MISSING}
    assert target.events == [("drop", 0, [key])]
    run(journal.flush(target))
    assert target.store is not None and target.store.mapping == {}


def test_write_back_refuses_past_max_pending_when_the_store_does_not_take_them() -> None:
    """Back-pressure: a full journal flushes first; if the store fails, CapacityError and nothing
    added."""
    target = plain_stack()
    journal = started(tc.WriteBack(flush_interval=60, max_pending=2), target)
    run(journal.write(context(target, {"a": 1, "b": 2}), target))
    assert target.store is not None
    target.store.failing = True
    with pytest.raises(CapacityError):
        run(journal.write(context(target, {"c": 3}), target))
    assert sorted(journal.local) == ["s:a", "s:b"]
    target.store.failing = False
    run(journal.write(context(target, {"c": 3}), target))  # the flush makes room now
    assert target.store.mapping == {"a": 1, "b": 2}


def test_write_back_dead_letters_after_max_attempts_and_replays_them() -> None:
    """An entry the store keeps refusing is dead-lettered, then replayed into the journal."""
    target = plain_stack()
    journal = started(tc.WriteBack(flush_interval=60, max_attempts=2), target)
    run(journal.write(context(target, {"k": 1}), target))
    assert target.store is not None
    target.store.failing = True
    assert run(journal.flush(target, force=True)) == (False, 1)
    run(journal.flush(target, force=True))
    assert run(journal.dead_letters(target)) == {"k": 1}
    assert journal.counters()["dead_lettered"] == 1 and journal.local == {}
    target.store.failing = False
    assert run(journal.replay_dead_letters(target)) == 1
    run(journal.flush(target, force=True))
    assert target.store.mapping == {"k": 1}


# -- WriteBack: a journal in a shared tier --------------------------------------------------


def test_write_back_journals_in_the_shared_tier_with_its_copy_and_announcement() -> None:
    """With a journaling tier: one put records the entry, sets its copy and adds the bus entry."""
    target = FakeTarget([FakeTier("l1"), FakeJournalTier("l2")], FakeStore(), announce=True)
    tier = target.tiers[1]
    journal = started(tc.WriteBack(flush_interval=60), target)
    outcome = run(journal.write(context(target, {"k": 1}), target))
    assert outcome == WriteOutcome(fill_local=True, announced=True)
    assert list(tier.journals[target.journal_key]) == ["s:k"]
    assert tier.data[target.tier_key("k")] == tc.MsgpackSerializer().dumps(1)
    assert len(tier.announced) == 1
    assert target.events == []  # the journal tier was written by the put, not by fill
    assert run(journal.pending(["s:k"], target)) == {0: 1}
    run(journal.flush(target))
    assert target.store is not None and target.store.mapping == {"k": 1}
    assert tier.journals[target.journal_key] == {}


def test_write_back_writes_through_when_the_journal_tier_is_away() -> None:
    """Journal unreachable: the store is written at once and the shared copies filled; no
    announcement."""
    target = FakeTarget([FakeTier("l1"), FakeJournalTier("l2")], FakeStore(), announce=True)
    target.tiers[1].failing = True
    journal = started(tc.WriteBack(flush_interval=60), target)
    outcome = run(journal.write(context(target, {"k": 1}), target))
    assert outcome == WriteOutcome(fill_local=True, announced=False)
    assert [e[0] for e in target.events] == ["save", "fill"]
    assert target.store is not None and target.store.mapping == {"k": 1}


def test_write_back_full_shared_journal_flushes_then_refuses() -> None:
    """A journal that stays full after a flush refuses the write with CapacityError."""
    target = FakeTarget([FakeJournalTier("l2")], FakeStore())
    target.tiers[0].full = True
    journal = started(tc.WriteBack(flush_interval=60), target)
    with pytest.raises(CapacityError):
        run(journal.write(context(target, {"k": 1}), target))
    assert target.tiers[0].journals.get(target.journal_key, {}) == {}
