"""Namespace.set's in-process write-back path: taken where it applies, equal to the general one.

The fast path (``Namespace._set_in_process``) serves ``set`` under WriteBack
when every tier is in the process. Each equivalence test runs the same
operations twice, on twin caches: once through ``ns.set`` (the fast path)
and once through ``Namespace.set`` (the general plan), and compares
everything a write leaves behind: the journal entries, the L1 entries with
their expiries, the fence generations, the counters, and the store after a
flush.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import pytest

import tiercache as tc
from tiercache._engine.flight import Fence
from tiercache.errors import (
    CapacityError,
    InvalidKeyError,
    SerializationError,
    TierError,
    ValueTooLargeError,
)
from tiercache.testing.clock import FakeClock
from tiercache.testing.scheduler import ManualScheduler

FAST = "fast"
GENERAL = "general"


class CountingStore(tc.MappingStore):
    """A MappingStore that records every save_many batch, and fails while ``failing``."""

    def __init__(self) -> None:
        super().__init__()
        self.saves: list[dict[Any, Any]] = []
        self.failing = False

    def save_many(self, items: Mapping[Any, Any]) -> None:
        if self.failing:
            raise tc.StoreError("injected store failure")
        self.saves.append(dict(items))
        super().save_many(items)


class HookedMemoryTier(tc.MemoryTier):
    """A MemoryTier that runs ``before_set`` (once) just before its next insert."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.before_set: Callable[[], object] | None = None

    def set_many(self, entries: Sequence[Any], now: float) -> None:
        hook, self.before_set = self.before_set, None
        if hook is not None:
            hook()
        super().set_many(entries, now)


class FailingMemoryTier(tc.MemoryTier):
    """A MemoryTier whose writes fail as a broken tier's would."""

    def set_many(self, entries: Sequence[Any], now: float) -> None:
        raise TierError("injected tier failure")


class RacingFence(Fence):
    """A Fence that runs ``race`` once, before a write's second bump: a change lands mid-write."""

    def __init__(self) -> None:
        super().__init__()
        self.race: Callable[[], object] | None = None
        self.bumps = 0

    def arm(self, race: Callable[[], object]) -> None:
        self.race, self.bumps = race, 0

    def _before_bump(self) -> None:
        self.bumps += 1
        if self.bumps == 2 and self.race is not None:
            race, self.race = self.race, None
            race()

    def bump(self, keys: Any) -> tuple[int, dict[str, int]]:
        self._before_bump()
        return super().bump(keys)

    def bump_one(self, key: str) -> tuple[int, int]:
        self._before_bump()
        return super().bump_one(key)


class Twin:
    """One namespace over in-process tiers, written through ``set`` by one path."""

    def __init__(
        self,
        path: str,
        tiers: Callable[[], list[Any]] | None = None,
        write: tc.WritePolicy | None = None,
        **options: Any,
    ) -> None:
        self.path = path
        self.clock = FakeClock()
        self.store = CountingStore()
        self.tiers = tiers() if tiers is not None else [tc.MemoryTier()]
        self.cache = tc.Cache(
            tiers=self.tiers, store=self.store, prefix="fp", clock=self.clock,
            scheduler=ManualScheduler(),
        )
        self.ns = self.cache.namespace(
            "ns", write=write if write is not None else tc.WriteBack(flush_interval=3600), **options
        )
        self.fence = self.ns.engine.state.fence = RacingFence()
        self.general_plans = 0
        write_plan = self.ns.engine.writer.write

        def counting_write_plan(batch: Any) -> Any:
            self.general_plans += 1
            return write_plan(batch)

        self.ns.engine.writer.write = counting_write_plan  # type: ignore[method-assign]

    def set(self, key: Any, value: Any) -> None:
        if self.path == FAST:
            self.ns.set(key, value)
        else:
            # The general path, as ``set`` takes it when the shortcut is not selected.
            self.ns.tier_key(key)
            self.ns.set_many({key: value})

    def set_all(self, items: Iterable[tuple[Any, Any]]) -> None:
        """``set`` each item in turn (not ``set_many``: each write is one ``set``)."""
        for key, value in items:
            self.set(key, value)

    def journal(self) -> dict[str, bytes]:
        return dict(self.ns.engine.state.run.local)  # type: ignore[attr-defined]

    def l1(self, t: int = 0) -> dict[str, Any]:
        """Every entry of in-process tier ``t``: ``{tier key: (value, expires_at, size)}``."""
        tier = self.tiers[t]
        return {key: tier.lookup(key) for key in list(tier._data)}

    def counters(self) -> dict[str, Any]:
        stats = self.ns.stats()
        fields = ("sets", "hits", "misses", "deletes", "errors")
        out: dict[str, Any] = {
            name: {f: layer[f] for f in fields} for name, layer in stats["tiers"].items()
        }
        out["store"] = {f: stats["store"][f] for f in fields}
        out["write_back"] = stats["write_back"]
        return out

    def state(self) -> dict[str, Any]:
        """All that a write leaves behind, before any flush."""
        return {
            "journal": self.journal(),
            "l1": [self.l1(t) for t in range(len(self.tiers))],
            "fence": (self.fence._epoch, list(self.fence._gens)),
            "counters": self.counters(),
        }

    def close(self) -> None:
        self.store.failing = False
        self.cache.close()


@pytest.fixture
def twins() -> Iterator[Callable[..., tuple[Twin, Twin]]]:
    """``twins(**options)``: the same namespace twice, one written by each path."""
    made: list[Twin] = []

    def make(**options: Any) -> tuple[Twin, Twin]:
        pair = (Twin(FAST, **options), Twin(GENERAL, **options))
        made.extend(pair)
        return pair

    yield make
    for twin in made:
        twin.close()


def both(pair: tuple[Twin, Twin], action: Callable[[Twin], object]) -> None:
    """Run ``action`` on each twin, each from the same seed of ``random`` (TTL jitter)."""
    for twin in pair:
        random.seed(7)
        action(twin)


def assert_same(pair: tuple[Twin, Twin]) -> None:
    fast, general = pair
    assert fast.state() == general.state()


def assert_same_after_flush(pair: tuple[Twin, Twin]) -> None:
    assert_same(pair)
    for twin in pair:
        twin.ns.flush()
    fast, general = pair
    assert fast.store.mapping == general.store.mapping
    assert fast.store.saves == general.store.saves
    assert fast.journal() == general.journal() == {}


KEYS: list[Any] = ["a", "b", "héllo", 7, -3, b"\x00raw", ("t", 1, b"x"), "a", 7]


# -- which namespaces take it -----------------------------------------------------------


def takes_fast_path(ns: tc.Namespace) -> bool:
    return bool(ns.engine.fast.in_process)  # the selection made once per configuration


def test_write_back_over_in_process_tiers_takes_the_fast_path() -> None:
    """WriteBack over MemoryTiers (one or two, or none) serves set without the general plan."""
    for tiers in ([tc.MemoryTier()], [tc.MemoryTier(), tc.MemoryTier(name="m2")], []):
        twin = Twin(FAST, tiers=functools.partial(list, tiers))
        try:
            assert takes_fast_path(twin.ns)
            twin.set("k", 1)
            assert twin.general_plans == 0
            assert twin.ns.get("k") == 1
        finally:
            twin.close()


class CustomWriteBack(tc.WriteBack):
    """A subclass of WriteBack: it may write differently, so it keeps the general plan."""


@pytest.mark.parametrize(
    "write",
    [tc.WriteThrough(), tc.WriteAround(), CustomWriteBack(flush_interval=3600)],
    ids=["write-through", "write-around", "write-back-subclass"],
)
def test_other_policies_take_the_general_path(write: Any) -> None:
    """WriteThrough, WriteAround and a WriteBack subclass keep the general plan."""
    twin = Twin(FAST, write=write)
    try:
        assert not takes_fast_path(twin.ns)
        twin.set("k", 1)
        assert twin.general_plans == 1
    finally:
        twin.close()


def test_a_redis_tier_keeps_the_general_path(redis_url: str, prefix: str) -> None:
    """With Redis in the stack (the journal lives there) set keeps the general plan."""
    cache = tc.Cache(
        tiers=[tc.MemoryTier(), tc.RedisTier(redis_url)], store=tc.MappingStore(), prefix=prefix,
        scheduler=ManualScheduler(), bus=False,
    )
    try:
        ns = cache.namespace("ns", write=tc.WriteBack(flush_interval=3600))
        assert not takes_fast_path(ns)
        ns.set("k", 1)
        assert ns.get("k") == 1
    finally:
        cache.close()


def test_async_namespace_set_stays_a_coroutine() -> None:
    """AsyncNamespace under WriteBack over MemoryTier: set still returns an awaitable."""

    async def scenario() -> Any:
        async with tc.AsyncCache(tiers=[tc.MemoryTier()], store=tc.MappingStore(),
                                 scheduler=ManualScheduler()) as cache:
            ns = cache.namespace("ns", write=tc.WriteBack(flush_interval=3600))
            # The async facade never takes the sync shortcut: its set is always a coroutine.
            assert asyncio.iscoroutinefunction(type(ns).set)
            pending = ns.set("k", 1)
            assert asyncio.iscoroutine(pending)
            await pending
            return await ns.get("k")

    assert asyncio.run(scenario()) == 1


def test_configure_reselects_the_path() -> None:
    """Swapping the write policy moves set off the fast path and back onto it."""
    twin = Twin(FAST)
    try:
        ns = twin.ns
        assert takes_fast_path(ns)
        ns.configure(write=tc.WriteThrough())
        assert not takes_fast_path(ns)
        twin.set("k", 1)
        assert twin.general_plans == 1
        assert twin.store.mapping == {"k": 1}  # written through, at once
        ns.configure(write=tc.WriteBack(flush_interval=3600))
        assert takes_fast_path(ns)
        twin.set("k", 2)
        assert twin.general_plans == 1
        assert twin.store.mapping == {"k": 1}
        assert ns.get("k") == 2
        ns.flush()
        assert twin.store.mapping == {"k": 2}
    finally:
        twin.close()


def test_a_set_kept_across_configure_follows_the_new_policy() -> None:
    """``ns.set`` kept from before a swap to WriteThrough (as wrap() keeps it) writes through."""
    twin = Twin(FAST)
    try:
        save = twin.ns.set
        twin.ns.configure(write=tc.WriteThrough())
        save("k", 1)
        assert twin.store.mapping == {"k": 1}
        assert twin.general_plans == 1
        assert twin.ns.get("k") == 1
    finally:
        twin.close()


# -- the same outcome as the general path -----------------------------------------------


def test_writes_leave_the_same_journal_l1_fences_and_counters(twins: Any) -> None:
    """Every kind of key, overwrites included: identical state, then identical store batches."""
    pair = twins()
    both(pair, lambda t: t.set_all((k, {"k": repr(k), "n": i}) for i, k in enumerate(KEYS)))
    assert [t.general_plans for t in pair] == [0, len(KEYS)]
    assert_same_after_flush(pair)
    fast, _general = pair
    assert fast.counters()["L1:memory"]["sets"] == len(KEYS)
    assert fast.store.mapping["a"] == {"k": "'a'", "n": 7}


def test_journal_entries_carry_the_sequence_number_and_payload() -> None:
    """Each write journals ``b"<seq>|" + serialized value``; a rewrite replaces the entry."""
    twin = Twin(FAST)
    try:
        twin.set("k", 1)
        twin.set(5, "five")
        twin.set("k", 3)
        dumps = tc.MsgpackSerializer().dumps
        assert twin.journal() == {"s:k": b"3|" + dumps(3), "i:5": b"2|" + dumps("five")}
    finally:
        twin.close()


@pytest.mark.parametrize(
    "options",
    [
        {"ttl": 30.0, "ttl_jitter": 0.5},
        {"invalidation": tc.Versioned()},
        {"invalidation": tc.TTL(10.0)},
        {"max_value_bytes": 1000},
        {"serializer": tc.PickleSerializer(hmac_key=b"k" * 32)},
    ],
    ids=["jitter", "versioned", "ttl-strategy", "max-value-bytes", "signed-pickle"],
)
def test_namespace_options_give_the_same_result(twins: Any, options: dict[str, Any]) -> None:
    """TTL with jitter, other invalidation strategies, a size bound, a signing serializer."""
    pair = twins(**options)
    both(pair, lambda t: t.set_all((k, [k, i]) for i, k in enumerate(KEYS)))
    assert [t.general_plans for t in pair] == [0, len(KEYS)]
    assert_same_after_flush(pair)


def test_tier_ttl_and_several_tiers_give_the_same_result(twins: Any) -> None:
    """Two in-process tiers, one with a TTL ceiling and a byte bound: each filled alike."""
    pair = twins(tiers=lambda: [tc.MemoryTier(ttl=5.0, admission="lru"),
                                tc.MemoryTier(name="m2", maxbytes=40)])
    both(pair, lambda t: t.set_all((k, "x" * (5 * (i % 6))) for i, k in enumerate(KEYS)))
    assert_same_after_flush(pair)
    fast, _general = pair
    assert fast.l1(0) and fast.l1(1)


class SetManyCountingTier(tc.MemoryTier):
    """A MemoryTier subclass that overrides ``set_many`` only: it counts the entries it gets."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.entries: list[str] = []

    def set_many(self, entries: Sequence[Any], now: float) -> None:
        self.entries += [entry[0] for entry in entries]
        super().set_many(entries, now)


def test_a_plain_memory_tier_is_filled_through_set_one() -> None:
    """The fast path fills a MemoryTier with ``set_one``, the single-key form of ``set_many``."""
    twin = Twin(FAST)
    try:
        assert twin.ns.engine.state.fills == [twin.tiers[0].set_one]  # type: ignore[attr-defined]
    finally:
        twin.close()


def test_a_subclass_overriding_set_many_sees_every_fast_path_write(twins: Any) -> None:
    """``set_one`` is skipped where a subclass overrides ``set_many`` alone: its override runs."""
    pair = twins(tiers=lambda: [SetManyCountingTier()])
    both(pair, lambda t: t.set_all((k, i) for i, k in enumerate(KEYS)))
    fast, general = pair
    assert fast.tiers[0].entries == general.tiers[0].entries == [
        fast.ns.tier_key(k) for k in KEYS
    ]
    assert_same_after_flush(pair)


# -- refusals: nothing written anywhere --------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "error"),
    [
        ("k", object(), SerializationError),
        ("k", bytearray(b"x"), SerializationError),
        ("k", "x" * 100, ValueTooLargeError),
        (True, 1, InvalidKeyError),
        (1.5, 1, InvalidKeyError),
        (["list"], 1, InvalidKeyError),
        ("\ud800", 1, InvalidKeyError),
    ],
    ids=["object", "bytearray", "too-large", "bool-key", "float-key", "list-key", "surrogate"],
)
def test_a_refused_write_changes_nothing(twins: Any, key: Any, value: Any, error: type) -> None:
    """A bad key or value: the general path's error; no tier, journal, fence or count moves."""
    pair = twins(max_value_bytes=50)
    both(pair, lambda t: t.set("kept", 1))
    before = pair[0].state()
    messages = []
    for twin in pair:
        with pytest.raises(error) as caught:
            twin.set(key, value)
        messages.append(str(caught.value))
        assert twin.state() == before
    assert messages[0] == messages[1]
    assert_same_after_flush(pair)
    assert pair[0].store.mapping == {"kept": 1}


# -- max_pending: back-pressure ----------------------------------------------------------


def test_a_full_journal_is_flushed_first(twins: Any) -> None:
    """At max_pending, the next write flushes the journal to the store, then journals."""
    pair = twins(write=tc.WriteBack(flush_interval=3600, max_pending=3))
    both(pair, lambda t: t.set_all((f"k{i}", i) for i in range(3)))
    assert [t.general_plans for t in pair] == [0, 3]
    assert all(t.store.saves == [] for t in pair)
    both(pair, lambda t: t.set("k3", 3))
    assert pair[0].general_plans == 1  # the back-pressure write took the general plan
    for twin in pair:
        assert twin.store.saves == [{"k0": 0, "k1": 1, "k2": 2}]
        assert twin.ns.get("k3") == 3
    assert_same_after_flush(pair)


def test_a_full_journal_the_store_refuses_refuses_the_write(twins: Any) -> None:
    """At max_pending with a failing store: CapacityError, and the refused value is nowhere."""
    pair = twins(write=tc.WriteBack(flush_interval=3600, max_pending=2))
    both(pair, lambda t: t.set_all((f"k{i}", i) for i in range(2)))
    for twin in pair:
        twin.store.failing = True
        journal, l1 = twin.journal(), twin.l1()
        with pytest.raises(CapacityError):
            twin.set("k2", 2)
        assert twin.journal() == journal
        assert twin.l1() == l1
        assert twin.ns.get("k2") is None
        twin.store.failing = False
    assert_same_after_flush(pair)
    assert pair[0].store.mapping == {"k0": 0, "k1": 1}


def test_purges_to_replay_are_replayed_first(twins: Any) -> None:
    """A remembered purge is replayed before the write, as the general plan does."""
    pair = twins()
    both(pair, lambda t: t.set("z", 0))
    for twin in pair:
        twin.ns.engine.failures.remember(0, [twin.ns.tier_key("z")])
        twin.set("k", 1)
        assert twin.ns.stats()["purges_replayed"] == 1
        assert twin.l1().keys() == {twin.ns.tier_key("k")}
    assert pair[0].general_plans == 1
    assert_same_after_flush(pair)


# -- fences: a change racing the write leaves no stale copy ------------------------------


def race_at_fill_ttl(ns: tc.Namespace, race: Callable[[], object]) -> None:
    """Run ``race`` once, when the write asks its fill TTL: after the bumps, before the insert."""
    state = ns.engine.state
    fill_ttl = state.fill_ttl

    def racing_fill_ttl(t: int, ttl: float | None = None) -> float | None:
        del state.fill_ttl
        race()
        return fill_ttl(t, ttl)

    state.fill_ttl = racing_fill_ttl  # type: ignore[method-assign]


@pytest.mark.parametrize("where", ["mid-write", "before-insert", "during-insert"])
def test_a_delete_racing_the_write_leaves_no_l1_copy(twins: Any, where: str) -> None:
    """A delete that lands while the write runs wins: no L1 copy, the read and the store agree."""
    pair = twins(tiers=lambda: [HookedMemoryTier()])
    both(pair, lambda t: t.set("k", "old"))
    for twin in pair:
        race = functools.partial(twin.ns.delete, "k")  # as another thread's delete would land
        if where == "mid-write":  # between the fence bumps: the write sees it was raced
            twin.fence.arm(race)
        elif where == "before-insert":  # the pre-insert check sees it
            race_at_fill_ttl(twin.ns, race)
        else:  # after the pre-insert check: the re-check after the insert removes the copy
            twin.tiers[0].before_set = race
        random.seed(7)
        twin.set("k", "new")
        assert twin.l1() == {}
        assert twin.ns.get("k") is None
    assert [t.general_plans for t in pair] == [0, 2]
    assert_same_after_flush(pair)
    assert pair[0].store.mapping == {}
    assert pair[0].counters()["L1:memory"]["sets"] == (1 if where == "during-insert" else 0) + 1


def test_an_invalidate_all_racing_the_write_leaves_no_l1_copy(twins: Any) -> None:
    """A namespace-wide change mid-write keeps the copy out; the journal has the value."""
    pair = twins()
    for twin in pair:
        twin.fence.arm(twin.ns.invalidate_all)
        twin.set("k", "v")
        assert twin.l1() == {}
        assert twin.ns.get("k") == "v"  # from the journal
    assert_same_after_flush(pair)


# -- tier failures ------------------------------------------------------------------------


def test_a_failing_tier_is_counted_and_read_around(twins: Any) -> None:
    """An in-process tier failing its write: an error counted, no set; the journal has the value."""
    pair = twins(tiers=lambda: [FailingMemoryTier(), tc.MemoryTier(name="m2")])
    both(pair, lambda t: t.set("k", 1))
    assert_same(pair)
    counters = pair[0].counters()
    assert counters["L1:memory"]["errors"] == 1 and counters["L1:memory"]["sets"] == 0
    assert counters["L2:m2"]["sets"] == 1
    assert_same_after_flush(pair)


def test_on_tier_error_raise_raises_from_both_paths(twins: Any) -> None:
    """Under on_tier_error="raise" a tier's failure propagates, after journaling, on both paths."""
    pair = twins(tiers=lambda: [FailingMemoryTier()])
    for twin in pair:
        twin.ns.engine.state.on_tier_error = "raise"
        with pytest.raises(TierError):
            twin.set("k", 1)
    assert_same_after_flush(pair)
    assert pair[0].store.mapping == {"k": 1}


# -- reads after writes --------------------------------------------------------------------


def test_read_your_writes_after_l1_eviction() -> None:
    """Writes evicted from a small L1 are read from the journal; the store waits for the flush."""
    twin = Twin(FAST, tiers=lambda: [tc.MemoryTier(maxsize=2, admission="lru")])
    try:
        for i in range(10):
            twin.set(f"k{i}", i)
        assert len(twin.tiers[0]) == 2
        assert [twin.ns.get(f"k{i}") for i in range(10)] == list(range(10))
        assert twin.store.mapping == {}
        assert twin.ns.stats()["store"]["hits"] == 0
    finally:
        twin.close()


def test_flush_writes_the_last_value_once() -> None:
    """Three writes of one key: one entry in the journal, one save of the last value."""
    twin = Twin(FAST)
    try:
        for value in (1, 2, 3):
            twin.set("k", value)
        assert twin.ns.stats()["write_back"]["pending_local"] == 1
        twin.ns.flush()
        assert twin.store.saves == [{"k": 3}]
        assert twin.ns.get("k") == 3
        assert twin.ns.stats()["write_back"]["flushed"] == 1
    finally:
        twin.close()
