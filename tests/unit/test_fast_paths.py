"""The single-key shortcuts equal the general plans: one table of cases, run on twin namespaces."""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

import tiercache as tc
from tiercache._engine.flight import Fence
from tiercache._engine.ops import run
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

    def get(self, key: Any, default: Any = None) -> Any:
        if self.path == FAST:
            return self.ns.get(key, default)
        # The general read plan, from L1 down (what ``get`` runs when no shortcut applies).
        return run(self.ns.engine.get_copy_plan(key, default))

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


class SetManyCountingTier(tc.MemoryTier):
    """A MemoryTier subclass that overrides ``set_many`` only: it counts the entries it gets."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.entries: list[str] = []

    def set_many(self, entries: Sequence[Any], now: float) -> None:
        self.entries += [entry[0] for entry in entries]
        super().set_many(entries, now)


def race_at_fill_ttl(ns: tc.Namespace, race: Callable[[], object]) -> None:
    """Run ``race`` once, when the write asks its fill TTL: after the bumps, before the insert."""
    state = ns.engine.state
    fill_ttl = state.fill_ttl

    def racing_fill_ttl(t: int, ttl: float | None = None) -> float | None:
        del state.fill_ttl
        race()
        return fill_ttl(t, ttl)

    state.fill_ttl = racing_fill_ttl  # type: ignore[method-assign]


KEYS: list[Any] = ["a", "b", "héllo", 7, -3, b"\x00raw", ("t", 1, b"x"), "a", 7]




# -- the table ---------------------------------------------------------------------------


# ``engine.fast`` serves ``set`` under WriteBack when every tier is in the
# process, and ``get`` inline from L1 (then one direct read of the next
# tier). Each row of CASES runs one script twice, on twin namespaces: once
# through the shortcuts (``ns.set``, ``ns.get``) and once through the
# general plans (``set_many``, the read plan from L1 down), then compares
# what the script returned and everything left behind: the journal
# entries, the L1 entries with their expiries, the fence generations, the
# counters, and the store after a flush.


@dataclass(frozen=True)
class Case:
    """One row: a script run on both twins, and what to check beyond their equality.

    ``setup`` runs first on both (seeded alike); ``script``'s return values
    must be equal; ``raises``: the script raises it on both, with the same
    message, changing nothing; ``plans``: general write plans run (fast
    twin, general twin); ``check`` runs before the flush, ``after`` after it.
    """

    id: str
    script: Callable[[Twin], Any]
    options: dict[str, Any] = field(default_factory=dict)
    setup: Callable[[Twin], Any] | None = None
    raises: type[Exception] | None = None
    plans: tuple[int, int] | None = None
    check: Callable[[Twin, Twin], Any] | None = None
    after: Callable[[Twin, Twin], Any] | None = None


def set_keys(value: Callable[[int, Any], Any]) -> Callable[[Twin], None]:
    """A script that sets every key of KEYS (repeats included), one ``set`` each."""
    return lambda twin: twin.set_all((k, value(i, k)) for i, k in enumerate(KEYS))


def checks(*conditions: Callable[[Twin, Twin], bool]) -> Callable[[Twin, Twin], None]:
    """A check made of conditions on (fast, general), each asserted."""

    def check(fast: Twin, general: Twin) -> None:
        for condition in conditions:
            assert condition(fast, general)

    return check


def fills_first_batch(twin: Twin) -> None:
    """At max_pending=3: three writes wait; the fourth flushes them first, then journals."""
    twin.set_all((f"k{i}", i) for i in range(3))
    assert twin.store.saves == []
    assert twin.general_plans == (0 if twin.path == FAST else 3)
    twin.set("k3", 3)
    assert twin.store.saves == [{"k0": 0, "k1": 1, "k2": 2}]
    assert twin.ns.get("k3") == 3


def refused_when_store_fails(twin: Twin) -> None:
    """At max_pending=2 with a failing store: CapacityError, and the refused value is nowhere."""
    twin.set_all((f"k{i}", i) for i in range(2))
    twin.store.failing = True
    journal, l1 = twin.journal(), twin.l1()
    with pytest.raises(CapacityError):
        twin.set("k2", 2)
    assert twin.journal() == journal and twin.l1() == l1
    assert twin.ns.get("k2") is None
    twin.store.failing = False


def replays_purges_first(twin: Twin) -> None:
    """A remembered purge is replayed before the write."""
    twin.ns.engine.failures.remember(0, [twin.ns.tier_key("z")])
    twin.set("k", 1)
    assert twin.ns.stats()["purges_replayed"] == 1
    assert twin.l1().keys() == {twin.ns.tier_key("k")}


def delete_racing(where: str) -> Callable[[Twin], None]:
    """A delete landing while the write of "new" runs: it wins, no L1 copy is left."""

    def script(twin: Twin) -> None:
        race = functools.partial(twin.ns.delete, "k")  # as another thread's delete would land
        if where == "mid-write":  # between the fence bumps: the write sees it was raced
            twin.fence.arm(race)
        elif where == "before-insert":  # the pre-insert check sees it
            race_at_fill_ttl(twin.ns, race)
        else:  # after the pre-insert check: the re-check after the insert removes the copy
            twin.tiers[0].before_set = race
        twin.set("k", "new")
        assert twin.l1() == {}
        assert twin.ns.get("k") is None

    return script


def invalidate_all_racing(twin: Twin) -> None:
    """A namespace-wide change mid-write keeps the copy out; the journal has the value."""
    twin.fence.arm(twin.ns.invalidate_all)
    twin.set("k", "v")
    assert twin.l1() == {}
    assert twin.ns.get("k") == "v"


def raising_tier(twin: Twin) -> None:
    """Under on_tier_error="raise" the tier's failure propagates, after journaling."""
    twin.ns.engine.state.on_tier_error = "raise"
    with pytest.raises(TierError):
        twin.set("k", 1)


def evicted_reads(twin: Twin) -> list[Any]:
    """Writes evicted from a two-entry L1 are read from the journal; the store waits."""
    twin.set_all((f"k{i}", i) for i in range(10))
    assert len(twin.tiers[0]) == 2
    got = [twin.get(f"k{i}") for i in range(10)]
    assert twin.store.mapping == {}
    assert twin.ns.stats()["store"]["hits"] == 0
    return got


def last_value_once(twin: Twin) -> None:
    """Three writes of one key: one journal entry."""
    for value in (1, 2, 3):
        twin.set("k", value)
    assert twin.ns.stats()["write_back"]["pending_local"] == 1


def reads(twin: Twin) -> list[Any]:
    """Hits, a miss, a default, MISSING, a cached None, every key kind."""
    return [
        twin.get("a"), twin.get(7), twin.get(("t", 1, b"x")), twin.get(b"\x00raw"),
        twin.get("absent"), twin.get("absent", "dflt"), twin.get("absent", tc.MISSING),
        twin.get("none"), twin.get("none", "dflt"), twin.get("héllo"),
    ]


def reads_after_expiry(twin: Twin) -> list[Any]:
    """L1 copies expire (tier TTL 5s); the reads fall to the journal, then the store."""
    twin.clock.advance(10.0)
    first = reads(twin)
    twin.ns.flush()
    twin.ns.engine.state.tiers[0].clear()  # type: ignore[attr-defined]
    return [first, reads(twin)]


def copied_reads(twin: Twin) -> list[Any]:
    """Under copy=, a caller mutating what it read changes nothing cached."""
    value = twin.get("a")
    value["mutated"] = True
    return [twin.get("a"), twin.get("absent")]


def seed_reads(twin: Twin) -> None:
    """Values to read: every key kind, and a cached None."""
    twin.set_all([("a", {"v": 1}), (7, [7]), (("t", 1, b"x"), "t"), (b"\x00raw", b"r"),
                  ("none", None), ("héllo", "é")])


SEQ_DUMPS = tc.MsgpackSerializer().dumps

CASES: list[Case] = [
    # writes, every kind of key, overwrites included
    Case("keys", set_keys(lambda i, k: {"k": repr(k), "n": i}), plans=(0, len(KEYS)),
         check=checks(lambda f, g: f.counters()["L1:memory"]["sets"] == len(KEYS)),
         after=checks(lambda f, g: f.store.mapping["a"] == {"k": "'a'", "n": 7})),
    Case("journal-entries", lambda t: t.set_all([("k", 1), (5, "five"), ("k", 3)]),
         check=checks(lambda f, g: f.journal() == {"s:k": b"3|" + SEQ_DUMPS(3),
                                                   "i:5": b"2|" + SEQ_DUMPS("five")})),
    # namespace options
    Case("jitter", set_keys(lambda i, k: [k, i]), {"ttl": 30.0, "ttl_jitter": 0.5},
         plans=(0, len(KEYS))),
    Case("versioned", set_keys(lambda i, k: [k, i]), {"invalidation": tc.Versioned()},
         plans=(0, len(KEYS))),
    Case("ttl-strategy", set_keys(lambda i, k: [k, i]), {"invalidation": tc.TTL(10.0)},
         plans=(0, len(KEYS))),
    Case("max-value-bytes", set_keys(lambda i, k: [k, i]), {"max_value_bytes": 1000},
         plans=(0, len(KEYS))),
    Case("signed-pickle", set_keys(lambda i, k: [k, i]),
         {"serializer": tc.PickleSerializer(hmac_key=b"k" * 32)}, plans=(0, len(KEYS))),
    # tiers
    Case("tier-ttl-two-tiers", set_keys(lambda i, k: "x" * (5 * (i % 6))),
         {"tiers": lambda: [tc.MemoryTier(ttl=5.0, admission="lru"),
                            tc.MemoryTier(name="m2", maxbytes=40)]},
         check=checks(lambda f, g: bool(f.l1(0)) and bool(f.l1(1)))),
    Case("set-many-override", set_keys(lambda i, k: i), {"tiers": lambda: [SetManyCountingTier()]},
         check=checks(lambda f, g: f.tiers[0].entries == g.tiers[0].entries
                      == [f.ns.tier_key(k) for k in KEYS])),
    Case("failing-tier", lambda t: t.set("k", 1),
         {"tiers": lambda: [FailingMemoryTier(), tc.MemoryTier(name="m2")]},
         check=checks(lambda f, g: f.counters()["L1:memory"]["errors"] == 1,
                      lambda f, g: f.counters()["L1:memory"]["sets"] == 0,
                      lambda f, g: f.counters()["L2:m2"]["sets"] == 1)),
    Case("on-tier-error-raise", raising_tier, {"tiers": lambda: [FailingMemoryTier()]},
         after=checks(lambda f, g: f.store.mapping == {"k": 1})),
    # refusals: nothing written anywhere
    *[Case(f"refused-{name}", functools.partial(lambda k, v, t: t.set(k, v), key, value),
           {"max_value_bytes": 50}, setup=lambda t: t.set("kept", 1), raises=error,
           after=checks(lambda f, g: f.store.mapping == {"kept": 1}))
      for name, key, value, error in [
          ("object", "k", object(), SerializationError),
          ("bytearray", "k", bytearray(b"x"), SerializationError),
          ("too-large", "k", "x" * 100, ValueTooLargeError),
          ("bool-key", True, 1, InvalidKeyError),
          ("float-key", 1.5, 1, InvalidKeyError),
          ("list-key", ["list"], 1, InvalidKeyError),
          ("surrogate", "\ud800", 1, InvalidKeyError),
      ]],
    # back-pressure and remembered purges: the shortcut hands over to the general plan
    Case("full-journal-flushed-first", fills_first_batch,
         {"write": tc.WriteBack(flush_interval=3600, max_pending=3)}, plans=(1, 4)),
    Case("full-journal-store-refuses", refused_when_store_fails,
         {"write": tc.WriteBack(flush_interval=3600, max_pending=2)},
         after=checks(lambda f, g: f.store.mapping == {"k0": 0, "k1": 1})),
    Case("purges-replayed-first", replays_purges_first, setup=lambda t: t.set("z", 0),
         plans=(1, 2)),
    # fences: a change racing the write leaves no stale copy
    *[Case(f"delete-racing-{where}", delete_racing(where),
           {"tiers": lambda: [HookedMemoryTier()]}, setup=lambda t: t.set("k", "old"),
           plans=(0, 2),
           after=checks(lambda f, g: f.store.mapping == {},
                        functools.partial(
                            lambda n, f, g: f.counters()["L1:memory"]["sets"] == n,
                            (1 if where == "during-insert" else 0) + 1)))
      for where in ["mid-write", "before-insert", "during-insert"]],
    Case("invalidate-all-racing", invalidate_all_racing),
    # reads after writes
    Case("read-your-writes-after-eviction", evicted_reads,
         {"tiers": lambda: [tc.MemoryTier(maxsize=2, admission="lru")]}),
    Case("flush-writes-last-value-once", last_value_once,
         after=checks(lambda f, g: f.store.saves == [{"k": 3}],
                      lambda f, g: f.ns.get("k") == 3,
                      lambda f, g: f.ns.stats()["write_back"]["flushed"] == 1)),
    # the get shortcut: inline L1 hit, then the plan from the next tier
    Case("get", reads, setup=seed_reads),
    Case("get-after-expiry", reads_after_expiry, {"tiers": lambda: [tc.MemoryTier(ttl=5.0)]},
         setup=seed_reads),
    Case("get-copy", copied_reads, {"copy": True}, setup=seed_reads),
    Case("get-no-l1", reads, {"tiers": list}, setup=seed_reads),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_the_shortcut_equals_the_general_path(twins: Any, case: Case) -> None:
    """Each row's script returns the same and leaves the same journal, L1, fences, counters,
    store."""
    pair = twins(**case.options)
    if case.setup is not None:
        both(pair, case.setup)
    if case.raises is not None:
        before = pair[0].state()
        messages = []
        for twin in pair:
            with pytest.raises(case.raises) as caught:
                case.script(twin)
            messages.append(str(caught.value))
            assert twin.state() == before
        assert messages[0] == messages[1]
    else:
        results = []
        for twin in pair:
            random.seed(7)  # the same TTL jitter on both
            results.append(case.script(twin))
        assert results[0] == results[1]
        assert_same(pair)
    if case.plans is not None:
        assert (pair[0].general_plans, pair[1].general_plans) == case.plans
    if case.check is not None:
        case.check(*pair)
    assert_same_after_flush(pair)
    if case.after is not None:
        case.after(*pair)


# -- which configurations take the set shortcut ------------------------------------------------


def takes_set_shortcut(ns: tc.Namespace) -> bool:
    return bool(ns.engine.fast.in_process)  # the selection made once per configuration


def test_write_back_over_in_process_tiers_takes_the_shortcut() -> None:
    """WriteBack over MemoryTiers (one or two, or none) serves set without the general plan."""
    for tiers in ([tc.MemoryTier()], [tc.MemoryTier(), tc.MemoryTier(name="m2")], []):
        twin = Twin(FAST, tiers=functools.partial(list, tiers))
        try:
            assert takes_set_shortcut(twin.ns)
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
        assert not takes_set_shortcut(twin.ns)
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
        assert not takes_set_shortcut(ns)
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
    """Swapping the write policy moves set off the shortcut and back onto it."""
    twin = Twin(FAST)
    try:
        ns = twin.ns
        assert takes_set_shortcut(ns)
        ns.configure(write=tc.WriteThrough())
        assert not takes_set_shortcut(ns)
        twin.set("k", 1)
        assert twin.general_plans == 1
        assert twin.store.mapping == {"k": 1}  # written through, at once
        ns.configure(write=tc.WriteBack(flush_interval=3600))
        assert takes_set_shortcut(ns)
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


def test_a_plain_memory_tier_is_filled_through_set_one() -> None:
    """The shortcut fills a MemoryTier with ``set_one``, the single-key form of ``set_many``."""
    twin = Twin(FAST)
    try:
        assert twin.ns.engine.state.fills == [twin.tiers[0].set_one]  # type: ignore[attr-defined]
    finally:
        twin.close()
