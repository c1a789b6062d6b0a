"""WriteBack against a failing store: retries with backoff, no write lost, dead letters replayable.

Each test runs twice: with the journal in the real Redis (L1 + L2) and with
the local journal of an L1-only cache.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

import tiercache as tc
from tiercache.testing.scheduler import ManualScheduler

FLUSH_TRIES = 200
"""Most flush() calls a test makes while waiting for retries to succeed."""


class FlakyStore(tc.MappingStore):
    """A MappingStore whose first ``fail_first`` writes fail, and that always refuses poison
    keys."""

    def __init__(self, fail_first: int = 0, poison: Sequence[Any] = ()) -> None:
        super().__init__()
        self.fail_first = fail_first
        self.poison = set(poison)
        self.failures = 0
        self.calls = 0

    def heal(self) -> None:
        """Stop failing."""
        self.fail_first = 0
        self.poison.clear()

    def _maybe_fail(self, keys: Sequence[Any]) -> None:
        self.calls += 1
        if self.calls <= self.fail_first or self.poison.intersection(keys):
            self.failures += 1
            raise tc.StoreError(f"injected failure #{self.failures} for {sorted(map(repr, keys))}")

    def save_many(self, items: Mapping[Any, Any]) -> None:
        self._maybe_fail(list(items))
        super().save_many(items)

    def delete_many(self, keys: Sequence[Any]) -> None:
        self._maybe_fail(list(keys))
        super().delete_many(keys)


@pytest.fixture(params=["redis-journal", "local-journal"])
def stack(request: pytest.FixtureRequest) -> str:
    """Where the write-back journal lives."""
    return str(request.param)


@pytest.fixture
def make_ns(stack: str, prefix: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    """``make_ns(store, **write_back_options)``: a WriteBack namespace over ``store``."""
    made: list[tuple[tc.Cache, FlakyStore]] = []
    url = request.getfixturevalue("redis_url") if stack == "redis-journal" else None

    def make(store: FlakyStore, **options: Any) -> tc.Namespace:
        tiers: list[Any] = [tc.MemoryTier()]
        if url is not None:
            tiers.append(tc.RedisTier(url, timeout=1.0))
        cache = tc.Cache(tiers=tiers, store=store, prefix=prefix, scheduler=ManualScheduler())
        made.append((cache, store))
        options.setdefault("flush_interval", 3600.0)
        options.setdefault("retry_backoff", 0.001)
        return cache.namespace("wb", write=tc.WriteBack(**options))

    try:
        yield make
    finally:
        for cache, store in made:
            store.heal()
            try:
                cache.close()
            except tc.StoreError:
                pass  # entries left in their retry backoff: reported by the test about it


def journal_length(ns: tc.Namespace) -> int:
    """Entries pending in the namespace's journal, wherever it lives."""
    pending = int(ns.stats()["write_back"]["pending_local"])
    for tier in ns.tiers:
        if hasattr(tier, "journal_put"):
            pending += int(tier.client.hlen(ns.journal_key))  # type: ignore[attr-defined]
    return pending


def flush_until_quiet(ns: tc.Namespace) -> int:
    """Call flush() until it stops raising StoreError (bounded); the number of failed flushes."""
    failed = 0
    for _ in range(FLUSH_TRIES):
        try:
            ns.flush()
        except tc.StoreError:
            failed += 1
            time.sleep(0.005)
            continue
        return failed
    raise AssertionError(f"flush() still failing after {FLUSH_TRIES} tries: {ns.stats()}")


def test_failed_saves_are_retried_and_nothing_is_lost(make_ns: Any) -> None:
    """A store failing its first 3 writes: flush retries with backoff and every write lands."""
    store = FlakyStore(fail_first=3)
    ns = make_ns(store, max_attempts=10)
    ns.set_many({f"k{i}": i for i in range(10)})
    try:
        ns.flush()  # may already retry within this call: the backoff is tiny
    except tc.StoreError:
        pass
    assert store.failures == 3
    # Writes made while the store is failing are kept too, the last one winning.
    ns.set("k0", "newer")
    ns.set("late", 1)
    assert ns.get("k0") == "newer"
    flush_until_quiet(ns)
    expected = {**{f"k{i}": i for i in range(10)}, "k0": "newer", "late": 1}
    assert store.mapping == expected
    assert journal_length(ns) == 0
    counters = ns.stats()["write_back"]
    assert counters["store_errors"] == 3 == store.failures
    assert counters["dead_lettered"] == 0
    assert ns.stats()["store"]["errors"] == 3
    assert ns.dead_letters() == {}
    assert ns.get_many(list(expected)) == expected


def test_background_flush_retries_too(make_ns: Any) -> None:
    """The scheduled flush job swallows a store failure and a later run writes the entries."""
    store = FlakyStore(fail_first=2)
    ns = make_ns(store)
    scheduler = ns.engine.state.scheduler  # the ManualScheduler given to the cache
    ns.set_many({"a": 1, "b": 2})
    for _ in range(FLUSH_TRIES):
        scheduler.run_pending()  # never raises: failures are logged and retried
        if store.mapping == {"a": 1, "b": 2}:
            break
        time.sleep(0.005)
    assert store.mapping == {"a": 1, "b": 2}
    assert journal_length(ns) == 0
    assert ns.stats()["write_back"]["store_errors"] == 2


def test_poison_key_is_dead_lettered_and_replayable(make_ns: Any) -> None:
    """A key the store always refuses is dead-lettered after max_attempts; the others are
    written."""
    store = FlakyStore(poison=["bad"])
    ns = make_ns(store, max_attempts=3)
    ns.set_many({"bad": {"v": 1}, **{f"ok{i}": i for i in range(5)}})
    failed = flush_until_quiet(ns)
    assert failed >= 1
    assert store.mapping == {f"ok{i}": i for i in range(5)}, "a good key waited for the poison one"
    assert ns.dead_letters() == {"bad": {"v": 1}}
    assert journal_length(ns) == 0
    counters = ns.stats()["write_back"]
    assert counters["dead_lettered"] == 1
    assert counters["store_errors"] >= 3
    assert ns.stats()["store"]["errors"] == counters["store_errors"]
    store.heal()
    assert ns.replay_dead_letters() == 1
    assert ns.dead_letters() == {}
    assert ns.get("bad") == {"v": 1}
    ns.flush()
    assert store.mapping["bad"] == {"v": 1}
    assert journal_length(ns) == 0
    assert ns.replay_dead_letters() == 0


def test_replay_never_overwrites_a_newer_write(make_ns: Any) -> None:
    """A dead letter replayed after a newer write to its key leaves the newer value to be
    written."""
    store = FlakyStore(poison=["bad"])
    ns = make_ns(store, max_attempts=2)
    ns.set("bad", "v1")
    flush_until_quiet(ns)
    assert ns.dead_letters() == {"bad": "v1"}
    ns.set("bad", "v2")
    store.heal()
    assert ns.replay_dead_letters() == 0
    assert ns.dead_letters() == {}
    ns.flush()
    assert store.mapping == {"bad": "v2"}
    assert ns.get("bad") == "v2"


def test_dead_lettered_delete_is_replayable(make_ns: Any) -> None:
    """A delete the store keeps refusing is dead-lettered as MISSING, and replays as a delete."""
    store = FlakyStore()
    ns = make_ns(store, max_attempts=2)
    ns.set("gone", 1)
    ns.flush()
    store.poison.add("gone")
    ns.delete("gone")
    assert ns.get("gone", tc.MISSING) is tc.MISSING
    flush_until_quiet(ns)
    assert ns.dead_letters() == {"gone": tc.MISSING}
    assert store.mapping == {"gone": 1}
    store.heal()
    assert ns.replay_dead_letters() == 1
    ns.flush()
    assert store.mapping == {}
    assert ns.stats()["write_back"]["dead_lettered"] == 1


def test_configure_with_a_failing_store_changes_nothing(make_ns: Any) -> None:
    """Swapping WriteBack out while its entries cannot be written raises and keeps them pending."""
    store = FlakyStore(poison=["p"])
    ns = make_ns(store, max_attempts=1000)
    ns.set_many({"p": 1, "q": 2})
    with pytest.raises(tc.StoreError):
        ns.configure(write=tc.WriteThrough())
    assert "write_back" in ns.stats(), "the policy changed although its writes were stuck"
    assert ns.get("p") == 1
    assert journal_length(ns) == 1
    store.heal()
    time.sleep(0.05)  # past the entry's retry backoff (see the next test)
    ns.configure(write=tc.WriteThrough())
    assert store.mapping == {"p": 1, "q": 2}
    assert "write_back" not in ns.stats()


def test_explicit_flush_after_recovery_does_not_wait_for_backoff(make_ns: Any) -> None:
    """flush() once the store is back writes an entry still inside its retry backoff."""
    store = FlakyStore(fail_first=2)
    ns = make_ns(store, retry_backoff=0.5)
    ns.set("k", 1)
    with pytest.raises(tc.StoreError):
        ns.flush()  # the batch and the single retry both fail
    assert store.failures == 2
    # The store works again: an explicit drain (flush, close, configure) should write k
    # now, not report it as failed because its 0.5 s backoff has not run out.
    ns.flush()
    assert store.mapping == {"k": 1}
