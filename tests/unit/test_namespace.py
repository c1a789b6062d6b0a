"""Namespace: the read path over every tier stack, TTLs, invalidation, options and lifecycle."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

import tiercache as tc
from tiercache.errors import ConfigurationError
from tiercache.serialization import MsgpackSerializer
from tiercache.testing.clock import FakeClock

STACKS = ["memory", "redis", "memory+redis"]
WITH_REDIS = ["redis", "memory+redis"]
WITH_MEMORY = ["memory", "memory+redis"]


class CountingTier:
    """A tier proxy that counts calls (one get_many per read is the promise)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: dict[str, int] = {}
        self.name = inner.name
        self.serialized = inner.serialized
        self.ttl = inner.ttl

    def _count(self, method: str) -> None:
        self.calls[method] = self.calls.get(method, 0) + 1

    def get_many(self, keys: Sequence[str], now: float) -> Any:
        self._count("get_many")
        return self._inner.get_many(keys, now)

    def set_many(self, entries: Sequence[Any], now: float) -> None:
        self._count("set_many")
        self._inner.set_many(entries, now)

    def delete_many(self, keys: Sequence[str]) -> None:
        self._count("delete_many")
        self._inner.delete_many(keys)

    def delete_prefix(self, prefix: str) -> None:
        self._count("delete_prefix")
        self._inner.delete_prefix(prefix)

    def close(self) -> None:
        self._count("close")
        self._inner.close()

    def __getattr__(self, name: str) -> Any:  # lookup, try_lock, ... of the real tier
        return getattr(self._inner, name)


class CountingStore(tc.MappingStore):
    """A MappingStore that records every load_many call's keys."""

    def __init__(self, mapping: dict[Any, Any] | None = None) -> None:
        super().__init__(mapping)
        self.loads: list[list[Any]] = []

    def load_many(self, keys: Sequence[Any]) -> dict[Any, Any]:
        self.loads.append(list(keys))
        return super().load_many(keys)


@dataclass
class Rig:
    cache: tc.Cache
    ns: tc.Namespace
    prefix: str
    clock: FakeClock
    redis_client: Any
    memory: tc.MemoryTier | None = None
    redis: tc.RedisTier | None = None
    store: CountingStore | None = None
    layers: list[str] = field(default_factory=list)

    def full(self, key: str, ns: str | None = None) -> str:
        return f"{self.prefix}:{ns or self.ns.name}:s:{key}"

    def stats(self) -> dict[str, Any]:
        return self.ns.stats()

    def layer(self, name: str) -> dict[str, Any]:
        return self.stats()["tiers"][name]

    def hits(self) -> dict[str, int]:
        """Hits per layer, the store included."""
        out = {name: self.layer(name)["hits"] for name in self.layers}
        if self.store is not None:
            out["store"] = self.stats()["store"]["hits"]
        return out

    def in_memory(self, key: str) -> bool:
        assert self.memory is not None
        return self.memory.get_many([self.full(key)], self.clock())[0] is not None

    def in_redis(self, key: str) -> bool:
        return bool(self.redis_client.exists(self.full(key)))

    def seed(self, items: Mapping[Any, Any], ns: tc.Namespace | None = None) -> None:
        """Cache items in every tier the way a read that loaded them does (the store untouched)."""
        (ns or self.ns).get_many(list(items), loader=lambda keys: {k: items[k] for k in keys})

    def plant_l2(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Put a value in Redis only, as another process' read would have."""
        assert self.redis is not None
        data = MsgpackSerializer().dumps(value)
        self.redis.set_many([(self.full(key), data, ttl, len(data))], 0.0)


Build = Callable[..., Rig]


@pytest.fixture
def build(redis_url: str, redis_client: Any, prefix: str) -> Iterator[Build]:
    """Make a cache over one tier stack (closed at the end) and a namespace "ns" in it."""
    caches: list[tc.Cache] = []

    def make(
        stack: str,
        store: bool | Mapping[Any, Any] = False,
        *,
        l1_ttl: float | None = None,
        l2_ttl: float | None = None,
        bus: bool = False,
        count: bool = False,
        **ns_options: Any,
    ) -> Rig:
        clock = FakeClock()
        memory = tc.MemoryTier(maxsize=1000, ttl=l1_ttl) if "memory" in stack else None
        redis = tc.RedisTier(redis_url, ttl=l2_ttl) if "redis" in stack else None
        tiers: list[Any] = [t for t in (memory, redis) if t is not None]
        if count:
            tiers = [CountingTier(t) for t in tiers]
        the_store = None
        if store is not False:
            the_store = CountingStore(dict(store) if isinstance(store, Mapping) else {})
        cache = tc.Cache(tiers=tiers, store=the_store, prefix=prefix, clock=clock, bus=bus)
        caches.append(cache)
        layers = [f"L{i + 1}:{t.name}" for i, t in enumerate(tiers)]
        ns = cache.namespace("ns", **ns_options)
        return Rig(cache, ns, prefix, clock, redis_client, memory, redis, the_store, layers)

    yield make
    for cache in caches:
        cache.close()


Writer = Callable[..., tc.Namespace]


@pytest.fixture
def other_writer(redis_url: str) -> Iterator[Writer]:
    """Namespaces in second caches with only the Redis tier (like another process' L2)."""
    caches: list[tc.Cache] = []

    def make(prefix: str, name: str = "ns", **options: Any) -> tc.Namespace:
        cache = tc.Cache(tiers=[tc.RedisTier(redis_url)], prefix=prefix, bus=False)
        caches.append(cache)
        return cache.namespace(name, **options)

    yield make
    for cache in caches:
        cache.close()


# -- the read path, every stack ----------------------------------------------------


@pytest.mark.parametrize("with_store", [False, True], ids=["no-store", "store"])
@pytest.mark.parametrize("stack", STACKS)
def test_a_set_value_is_read_back(build: Build, stack: str, with_store: bool) -> None:
    """After set, get returns the value: from L1 when there is one, from Redis in a pure cache."""
    rig = build(stack, with_store)
    rig.ns.set("k", {"v": 1})
    assert rig.ns.get("k") == {"v": 1}
    hits = rig.hits()
    assert sum(hits.values()) == 1
    if rig.memory is not None or rig.store is None:
        assert hits[rig.layers[0]] == 1, f"not served by {rig.layers[0]}: {hits}"
    if rig.store is not None:
        assert rig.store.mapping == {"k": {"v": 1}}


@pytest.mark.parametrize("stack", WITH_REDIS)
def test_pure_cache_set_reaches_redis_for_other_caches(build: Build, stack: str) -> None:
    """In a namespace without a store, a value set by one cache is read by another cache on the same
    Redis."""
    rig = build(stack)
    reader = build("redis")
    rig.ns.set("k", "shared")
    assert reader.ns.get("k", default=tc.MISSING) == "shared"


@pytest.mark.parametrize("stack", STACKS)
def test_store_hit_fills_every_tier(build: Build, stack: str) -> None:
    """A value only the store has is returned, counted as a store hit, and cached in every tier."""
    rig = build(stack, {"k": [1, 2]})
    assert rig.ns.get("k") == [1, 2]
    assert rig.hits()["store"] == 1
    for name in rig.layers:
        assert rig.layer(name)["misses"] == 1
    if rig.memory is not None:
        assert rig.in_memory("k")
    if rig.redis is not None:
        assert rig.in_redis("k")
    assert rig.ns.get("k") == [1, 2]
    assert rig.hits() == {**dict.fromkeys(rig.layers, 0), rig.layers[0]: 1, "store": 1}
    assert rig.store is not None and len(rig.store.loads) == 1


@pytest.mark.parametrize("with_store", [False, True], ids=["no-store", "store"])
def test_l2_hit_backfills_l1(build: Build, with_store: bool) -> None:
    """A key only L2 holds is served by L2 and copied into L1; the next read is an L1 hit."""
    rig = build("memory+redis", with_store)
    rig.plant_l2("k", "from L2")
    assert not rig.in_memory("k")
    assert rig.ns.get("k") == "from L2"
    assert rig.hits() == {"L1:memory": 0, "L2:redis": 1, **({"store": 0} if with_store else {})}
    assert rig.in_memory("k")
    assert rig.ns.get("k") == "from L2"
    assert rig.hits()["L1:memory"] == 1
    assert rig.hits()["L2:redis"] == 1


@pytest.mark.parametrize("with_store", [False, True], ids=["no-store", "store"])
@pytest.mark.parametrize("stack", STACKS)
def test_absent_key_returns_default_and_missing(build: Build, stack: str, with_store: bool) -> None:
    """A key absent everywhere gives None, the given default, or MISSING when asked for it."""
    rig = build(stack, with_store)
    assert rig.ns.get("nope") is None
    assert rig.ns.get("nope", default="d") == "d"
    assert rig.ns.get("nope", default=tc.MISSING) is tc.MISSING
    assert rig.ns.get_many(["nope"]) == {}
    if rig.store is not None:
        assert rig.stats()["store"]["misses"] == 4
    for name in rig.layers:
        assert rig.layer(name)["hits"] == 0


@pytest.mark.parametrize("with_store", [False, True], ids=["no-store", "store"])
@pytest.mark.parametrize("stack", STACKS)
def test_cached_none_is_a_value_not_a_miss(build: Build, stack: str, with_store: bool) -> None:
    """get(k, default=MISSING) returns None for a cached None, and get_many includes it."""
    rig = build(stack, with_store)
    rig.ns.set("none", None)
    assert rig.ns.get("none", default=tc.MISSING) is None
    assert rig.ns.get("none", default="d") is None
    assert rig.ns.get_many(["none", "absent"]) == {"none": None}
    rig.seed({"seeded": None})
    assert rig.ns.get("seeded", default=tc.MISSING) is None
    assert rig.layer(rig.layers[0])["hits"] >= 1


@pytest.mark.parametrize("stack", STACKS)
def test_none_loaded_from_the_store_is_cached(build: Build, stack: str) -> None:
    """A None the store holds is returned as a value and cached: the store is asked once."""
    rig = build(stack, {"k": None})
    assert rig.ns.get("k", default=tc.MISSING) is None
    assert rig.ns.get("k", default=tc.MISSING) is None
    assert rig.store is not None and len(rig.store.loads) == 1


# -- get_many --------------------------------------------------------------------


@pytest.mark.parametrize("with_store", [False, True], ids=["no-store", "store"])
@pytest.mark.parametrize("stack", STACKS)
def test_get_many_is_one_round_trip_per_layer_and_keeps_order(
    build: Build, stack: str, with_store: bool
) -> None:
    """get_many asks each tier once and the store once, and returns the found keys in request
    order."""
    rig = build(stack, with_store, count=True)
    cached = {f"c{i}": i for i in range(20)}
    rig.seed(cached)
    if rig.store is not None:
        rig.store.mapping.update({f"s{i}": -i for i in range(20)})
    wanted = [k for i in range(20) for k in (f"s{19 - i}", f"missing{i}", f"c{i}", 7, ("t", i))]
    tiers: list[CountingTier] = rig.cache.tiers  # type: ignore[assignment]
    before = [dict(t.calls) for t in tiers]
    found = rig.ns.get_many(wanted)
    for tier, calls in zip(tiers, before, strict=True):
        assert tier.calls.get("get_many", 0) - calls.get("get_many", 0) == 1
    expected = {k: cached[k] for k in wanted if k in cached}
    if rig.store is not None:
        expected = {k: (cached[k] if k in cached else -int(k[1:])) for k in wanted
                    if isinstance(k, str) and k[0] in "cs"}
        assert len(rig.store.loads) == 1
        assert not any(isinstance(k, str) and k.startswith("c") for k in rig.store.loads[0])
    assert list(found) == list(expected)
    assert found == expected


def test_get_many_mixes_layers_in_one_call(build: Build) -> None:
    """One get_many gathers L1 hits, L2 hits and store hits, asking each layer only for what is
    left."""
    rig = build("memory+redis", {"s": "store"}, count=True)
    rig.seed({"both": "L1 and L2"})
    rig.plant_l2("l2", "L2 only")
    l1, l2 = rig.cache.tiers  # type: ignore[misc]
    l1.calls.clear()
    l2.calls.clear()
    before = rig.hits()
    assert rig.ns.get_many(["s", "none", "l2", "both"]) == {
        "s": "store", "l2": "L2 only", "both": "L1 and L2"
    }
    assert l1.calls.get("get_many") == 1 and l2.calls.get("get_many") == 1
    assert rig.store is not None and rig.store.loads == [["s", "none"]]
    after = rig.hits()
    assert {k: after[k] - before[k] for k in after} == {"L1:memory": 1, "L2:redis": 1, "store": 1}


def test_get_many_deduplicates_keys(build: Build) -> None:
    """A key named twice is looked up once and appears once."""
    rig = build("memory", {"a": 1})
    assert rig.ns.get_many(["a", "a", "b", "b"]) == {"a": 1}
    assert rig.store is not None and rig.store.loads == [["a", "b"]]


@pytest.mark.parametrize("with_store", [False, True], ids=["no-store", "store"])
@pytest.mark.parametrize("stack", STACKS)
def test_get_many_loader_is_called_once_with_only_missing_keys(
    build: Build, stack: str, with_store: bool
) -> None:
    """loader= gets just the keys no tier has, once; its answers are cached, the store is not
    asked."""
    rig = build(stack, with_store)
    rig.seed({1: "one", 2: "two"})
    calls: list[list[Any]] = []

    def loader(keys: list[Any]) -> dict[Any, Any]:
        calls.append(list(keys))
        return {k: f"loaded {k}" for k in keys if k != 6}

    assert rig.ns.get_many([1, 3, 2, 4, 5, 6], loader=loader) == {
        1: "one", 3: "loaded 3", 2: "two", 4: "loaded 4", 5: "loaded 5"}
    assert calls == [[3, 4, 5, 6]]
    assert rig.ns.get_many([3, 4, 5, 1], loader=loader) == {
        3: "loaded 3", 4: "loaded 4", 5: "loaded 5", 1: "one"
    }
    assert calls == [[3, 4, 5, 6]]
    assert rig.ns.get(4) == "loaded 4"
    if rig.store is not None:
        assert rig.store.loads == []
        assert rig.store.mapping == {}


def test_get_many_loader_single_missing_key(build: Build) -> None:
    """With one missing key (the cross-process lease path) the loader is still used, once."""
    rig = build("memory+redis", True)
    calls: list[list[Any]] = []

    def loader(keys: list[Any]) -> dict[Any, Any]:
        calls.append(list(keys))
        return {k: k * 2 for k in keys}

    assert rig.ns.get_many([21], loader=loader) == {21: 42}
    assert rig.ns.get_many([21], loader=loader) == {21: 42}
    assert calls == [[21]]
    assert rig.store is not None and rig.store.loads == []


# -- negative caching and TTLs ---------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_negative_ttl_caches_absence(build: Build, stack: str) -> None:
    """With negative_ttl a store miss is cached: the store is consulted once for repeated reads."""
    rig = build(stack, True, negative_ttl=30)
    assert rig.ns.get("absent") is None
    assert rig.ns.get("absent", default=tc.MISSING) is tc.MISSING
    assert rig.ns.get_many(["absent"]) == {}
    assert rig.store is not None and rig.store.loads == [["absent"]]
    rig.ns.set("absent", "now here")
    assert rig.ns.get("absent") == "now here"


def test_negative_entry_expires_after_negative_ttl(build: Build) -> None:
    """A cached absence lasts negative_ttl on the cache clock, then the store is asked again."""
    rig = build("memory", True, negative_ttl=30)
    assert rig.ns.get("k") is None
    assert rig.store is not None
    rig.store.mapping["k"] = "arrived"
    rig.clock.advance(29)
    assert rig.ns.get("k") is None
    rig.clock.advance(2)
    assert rig.ns.get("k") == "arrived"
    assert len(rig.store.loads) == 2


def test_without_negative_ttl_every_miss_reaches_the_store(build: Build) -> None:
    """Absence is not cached by default: each read of an absent key asks the store."""
    rig = build("memory+redis", True)
    for _ in range(3):
        assert rig.ns.get("absent") is None
    assert rig.store is not None and len(rig.store.loads) == 3


def test_backfill_never_outlives_the_l2_copy(build: Build) -> None:
    """An L1 copy filled from L2 expires no later than the L2 copy it came from."""
    writer = build("redis", True, ttl=2)  # another cache, whose namespace ttl is 2 s
    assert writer.store is not None
    writer.store.mapping["k"] = "short-lived"
    assert writer.ns.get("k") == "short-lived"  # fills Redis for 2 s
    rig = build("memory+redis", l1_ttl=300)
    remaining_l2 = rig.redis_client.pttl(rig.full("k")) / 1000
    assert 0 < remaining_l2 <= 2
    assert rig.ns.get("k") == "short-lived"
    assert rig.layer("L2:redis")["hits"] == 1
    assert rig.memory is not None
    _value, expires_at, _size = rig.memory.lookup(rig.full("k"))
    l1_remaining = expires_at - rig.clock()
    assert 0 < l1_remaining <= remaining_l2 + 0.01
    rig.clock.advance(2.01)
    assert not rig.in_memory("k")


def test_backfill_of_an_l2_copy_without_expiry_uses_l1_ceiling(build: Build) -> None:
    """An L2 copy with no expiry backfills L1 with L1's own ttl."""
    rig = build("memory+redis", l1_ttl=300)
    rig.plant_l2("k", 1)
    assert rig.ns.get("k") == 1
    assert rig.memory is not None
    assert rig.memory.lookup(rig.full("k"))[1] - rig.clock() == pytest.approx(300)


@pytest.mark.parametrize("stack", WITH_MEMORY)
def test_store_fill_uses_each_tiers_ceiling(build: Build, stack: str) -> None:
    """A store hit fills L1 with min(L1 ttl, namespace ttl) and L2 with min(L2 ttl, namespace
    ttl)."""
    rig = build(stack, {"k": 1}, l1_ttl=20, l2_ttl=5, ttl=60)
    assert rig.ns.get("k") == 1
    assert rig.memory is not None
    assert rig.memory.lookup(rig.full("k"))[1] - rig.clock() == pytest.approx(20)
    if rig.redis is not None:
        assert 4_000 < rig.redis_client.pttl(rig.full("k")) <= 5_000


@pytest.mark.parametrize("stack", STACKS)
def test_namespace_ttl_is_a_ceiling_in_every_tier(build: Build, stack: str) -> None:
    """Namespace ttl=5 caps tiers whose own ttl is 300."""
    rig = build(stack, {"k": 1}, l1_ttl=300, l2_ttl=300, ttl=5)
    assert rig.ns.get("k") == 1
    if rig.memory is not None:
        assert rig.memory.lookup(rig.full("k"))[1] - rig.clock() == pytest.approx(5)
    if rig.redis is not None:
        assert 4_000 < rig.redis_client.pttl(rig.full("k")) <= 5_000


def test_tier_ttl_below_namespace_ttl_wins(build: Build) -> None:
    """A tier's own shorter ttl still applies under a longer namespace ttl."""
    rig = build("memory+redis", {"k": 1}, l1_ttl=3, l2_ttl=4, ttl=100)
    assert rig.ns.get("k") == 1
    assert rig.memory is not None
    assert rig.memory.lookup(rig.full("k"))[1] - rig.clock() == pytest.approx(3)
    assert 3_000 < rig.redis_client.pttl(rig.full("k")) <= 4_000


@pytest.mark.parametrize("stack", STACKS)
def test_ttl_invalidation_sets_the_ceiling(build: Build, stack: str) -> None:
    """invalidation=TTL(7) caps every copy at 7 s; with a namespace ttl of 3 the smaller wins."""
    rig = build(stack, {"k": 1}, invalidation=tc.TTL(7))
    assert rig.ns.get("k") == 1
    if rig.memory is not None:
        assert rig.memory.lookup(rig.full("k"))[1] - rig.clock() == pytest.approx(7)
        rig.clock.advance(7)
        assert not rig.in_memory("k")
    if rig.redis is not None:
        assert 6_000 < rig.redis_client.pttl(rig.full("k")) <= 7_000
    short = rig.cache.namespace("short", invalidation=tc.TTL(7), ttl=3)
    assert short.get("k") == 1  # the MappingStore is shared by every namespace
    if rig.redis is not None:
        assert 2_000 < rig.redis_client.pttl(rig.full("k", "short")) <= 3_000


def test_memory_copy_expires_on_the_cache_clock(build: Build) -> None:
    """A namespace ttl expires L1 copies when the injected clock passes it, then the store is
    asked."""
    rig = build("memory", {"k": 1}, ttl=10)
    assert rig.ns.get("k") == 1
    rig.clock.advance(9.9)
    assert rig.ns.get("k") == 1
    rig.clock.advance(0.2)
    assert rig.ns.get("k") == 1
    assert rig.store is not None and len(rig.store.loads) == 2


# -- delete and invalidation ----------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_delete_removes_from_store_and_every_tier(build: Build, stack: str) -> None:
    """delete drops the key from the store, L1 and L2; a later get is a miss."""
    rig = build(stack, {"k": 1, "other": 2})
    assert rig.ns.get_many(["k", "other"]) == {"k": 1, "other": 2}  # cached in every tier
    rig.ns.delete("k")
    assert rig.store is not None and rig.store.mapping == {"other": 2}
    if rig.memory is not None:
        assert not rig.in_memory("k") and rig.in_memory("other")
    if rig.redis is not None:
        assert not rig.in_redis("k") and rig.in_redis("other")
    assert rig.ns.get("k", default=tc.MISSING) is tc.MISSING
    rig.ns.delete("never-existed")


@pytest.mark.parametrize("stack", STACKS)
def test_invalidate_leaves_the_store(build: Build, stack: str) -> None:
    """invalidate drops cached copies only; the next read reloads the value from the store."""
    rig = build(stack, {"k": "v"})
    assert rig.ns.get("k") == "v"
    rig.ns.invalidate("k")
    assert rig.store is not None and rig.store.mapping == {"k": "v"}
    if rig.memory is not None:
        assert not rig.in_memory("k")
    if rig.redis is not None:
        assert not rig.in_redis("k")
    assert rig.ns.get("k") == "v"
    assert rig.hits()["store"] == 2


def _scan(client: Any, pattern: str) -> set[str]:
    return {k.decode() for k in client.scan_iter(match=pattern, count=1000)}


@pytest.fixture
def other_prefix(redis_url: str, redis_client: Any, prefix: str) -> Iterator[str]:
    """A second key prefix for the test, cleaned afterwards."""
    value = prefix + "-other"
    yield value
    keys = list(redis_client.scan_iter(match=f"{value}:*", count=1000))
    if keys:
        redis_client.unlink(*keys)


def test_invalidate_all_removes_only_this_namespace(
    build: Build, other_writer: Writer, redis_client: Any, other_prefix: str
) -> None:
    """invalidate_all empties this namespace in L1 and Redis; namespaces "ab", "b" and another
    prefix keep theirs."""
    items = {"1": 1, "2": 2, ("t", 3): 3}
    rig = build("memory+redis", items)
    a, ab, b = rig.ns, rig.cache.namespace("ab"), rig.cache.namespace("b")
    foreign = other_writer(other_prefix, "ns")
    for ns in (a, ab, b, foreign):
        rig.seed(items, ns)
    a.invalidate_all()
    p = rig.prefix
    assert _scan(redis_client, f"{p}:ns:*") == set()
    assert len(_scan(redis_client, f"{p}:ab:*")) == 3
    assert len(_scan(redis_client, f"{p}:b:*")) == 3
    assert len(_scan(redis_client, f"{other_prefix}:ns:*")) == 3
    assert not rig.in_memory("1")
    assert rig.memory is not None
    assert rig.memory.get_many(
        [rig.full("1", "ab"), rig.full("1", "b")], rig.clock()
    ) != [None, None]
    assert rig.store is not None and rig.store.mapping["1"] == 1
    assert a.get("1") == 1  # from the store again
    assert ab.get("1") == 1 and rig.layer("L1:memory")["hits"] == 0


def test_invalidate_all_under_versioned_hides_old_copies(build: Build) -> None:
    """Under Versioned, invalidate_all makes every old copy unreadable (O(1) version bump)."""
    rig = build("memory+redis", {"1": 1, "2": 2}, invalidation=tc.Versioned())
    assert rig.ns.get_many(["1", "2"]) == {"1": 1, "2": 2}
    assert rig.store is not None
    rig.store.mapping["1"] = "new"
    rig.ns.invalidate_all()
    assert rig.ns.get("1") == "new"


# -- namespace options -------------------------------------------------------------


def test_namespace_returns_the_same_object(build: Build) -> None:
    """namespace(name) twice returns one object; asking with no options returns the configured
    one."""
    rig = build("memory", ttl=5)
    assert rig.cache.namespace("ns") is rig.ns
    assert rig.cache.namespace("x") is rig.cache.namespace("x")
    assert rig.cache.namespaces == {"ns": rig.ns, "x": rig.cache.namespace("x")}


def test_namespace_with_the_same_options_returns_the_same_object(build: Build) -> None:
    """Asking again with options equal to the namespace's own is not a conflict."""
    rig = build("memory", ttl=5)
    assert rig.cache.namespace("ns", ttl=5) is rig.ns
    y = rig.cache.namespace("y", write=tc.WriteThrough(), invalidation=tc.Purge(), ttl=5)
    assert rig.cache.namespace("y", write=tc.WriteThrough(), invalidation=tc.Purge(), ttl=5) is y


@pytest.mark.parametrize(
    "options",
    [{"ttl": 6}, {"negative_ttl": 1}, {"max_value_bytes": 10}, {"write": tc.WriteAround()},
     {"invalidation": tc.TTL(5)}, {"copy": True}, {"store": tc.MappingStore()},
     {"serializer": tc.JSONSerializer()}],
    ids=lambda o: next(iter(o)),
)
def test_conflicting_options_raise_configuration_error(
    build: Build, options: dict[str, Any]
) -> None:
    """Redefining an existing namespace with other options raises ConfigurationError and changes
    nothing."""
    rig = build("memory", ttl=5)
    with pytest.raises(ConfigurationError):
        rig.cache.namespace("ns", **options)
    assert rig.cache.namespace("ns") is rig.ns
    assert rig.ns.config.ttl == 5


def test_configure_swaps_the_write_policy(build: Build) -> None:
    """configure(write=WriteAround()) makes later writes skip the tiers; reads then fill them."""
    rig = build("memory+redis", {"a": 1})
    assert rig.ns.get("a") == 1
    assert rig.in_memory("a") and rig.in_redis("a")
    rig.ns.configure(write=tc.WriteAround())
    assert isinstance(rig.ns.config.write, tc.WriteAround)
    rig.ns.set("a", 2)
    assert rig.store is not None and rig.store.mapping["a"] == 2
    assert not rig.in_memory("a") and not rig.in_redis("a")
    assert rig.ns.get("a") == 2
    assert rig.in_memory("a") and rig.in_redis("a")


def test_configure_swaps_invalidation_and_drops_l1(build: Build) -> None:
    """configure(invalidation=TTL(3)) empties this namespace's L1 and caps new copies at 3 s."""
    rig = build("memory", True)
    rig.ns.set("a", 1)
    rig.ns.configure(invalidation=tc.TTL(3))
    assert not rig.in_memory("a")
    assert rig.ns.get("a") == 1
    assert rig.memory is not None
    assert rig.memory.lookup(rig.full("a"))[1] - rig.clock() == pytest.approx(3)


def test_configure_write_back_then_back_flushes_pending_writes(build: Build) -> None:
    """Swapping from WriteBack flushes its pending writes to the store first."""
    rig = build("memory", True, write=tc.WriteBack(flush_interval=3600))
    rig.ns.set("a", 1)
    assert rig.store is not None and "a" not in rig.store.mapping
    assert rig.ns.get("a") == 1
    rig.ns.configure(write=tc.WriteThrough())
    assert rig.store.mapping == {"a": 1}


@pytest.mark.parametrize("options", [{"write": "through"}, {"invalidation": 60}], ids=repr)
def test_configure_refuses_non_policies(build: Build, options: dict[str, Any]) -> None:
    """configure() with something that is not a policy raises ConfigurationError and changes
    nothing."""
    rig = build("memory")
    before = rig.ns.config
    with pytest.raises(ConfigurationError):
        rig.ns.configure(**options)
    assert rig.ns.config == before


# -- copies ------------------------------------------------------------------------


@pytest.mark.parametrize("stack", WITH_MEMORY)
def test_default_reads_return_the_cached_object_itself(build: Build, stack: str) -> None:
    """Pitfall (documented): without copy=True an L1 hit is the cached object; mutating it mutates
    the cache."""
    rig = build(stack)
    rig.ns.set("k", {"list": [1]})
    first = rig.ns.get("k")
    first["list"].append(2)
    second = rig.ns.get("k")
    assert second is first
    assert second == {"list": [1, 2]}


@pytest.mark.parametrize("stack", STACKS)
def test_copy_true_returns_independent_copies(build: Build, stack: str) -> None:
    """With copy=True every get and get_many returns a fresh deep copy; mutations do not leak."""
    rig = build(stack, {"k": {"list": [1]}}, copy=True)
    first = rig.ns.get("k")
    first["list"].append(2)
    second = rig.ns.get("k")
    assert second == {"list": [1]}
    assert second is not first
    many = rig.ns.get_many(["k"])
    many["k"]["list"].append(3)
    assert rig.ns.get("k") == {"list": [1]}
    assert rig.ns.get("absent", default="d") == "d"


# -- lifecycle ---------------------------------------------------------------------


def test_close_closes_every_tier_once(redis_url: str, prefix: str) -> None:
    """Cache.close() closes each tier once (and again is a no-op); L1 is emptied."""
    memory = tc.MemoryTier()
    tiers = [CountingTier(memory), CountingTier(tc.RedisTier(redis_url))]
    cache = tc.Cache(tiers=tiers, prefix=prefix, bus=False)  # type: ignore[list-item]
    cache.namespace("ns").set("k", 1)
    cache.close()
    cache.close()
    assert [t.calls.get("close") for t in tiers] == [1, 1]
    assert len(memory) == 0


def test_context_manager_closes_and_flushes(redis_url: str, prefix: str) -> None:
    """Leaving `with Cache(...)` flushes write-back buffers, closes tiers and stops the bus
    thread."""
    memory = tc.MemoryTier()
    counting = CountingTier(tc.RedisTier(redis_url))
    store = tc.MappingStore()
    before = _bus_threads()  # other tests' caches may still be open
    with tc.Cache(tiers=[memory, counting], store=store, prefix=prefix) as cache:  # type: ignore[list-item]
        ns = cache.namespace("ns", write=tc.WriteBack(flush_interval=3600))
        ns.set("k", "pending")
        assert store.mapping == {}
        ours = _bus_threads() - before
        assert len(ours) == 1, ours
    assert store.mapping == {"k": "pending"}
    assert counting.calls.get("close") == 1
    assert len(memory) == 0
    with pytest.raises(ConfigurationError):
        cache.namespace("later")
    assert _bus_threads() & ours == set()


def _bus_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("tiercache-bus")}


def test_context_manager_closes_on_error(prefix: str) -> None:
    """An exception inside the with-block still closes the cache, and propagates."""
    memory = CountingTier(tc.MemoryTier())

    def use_then_fail() -> None:
        with tc.Cache(tiers=[memory], prefix=prefix) as cache:  # type: ignore[list-item]
            cache.namespace("ns").set("k", 1)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        use_then_fail()
    assert memory.calls.get("close") == 1


# -- stats -------------------------------------------------------------------------

LAYER_KEYS = {"requests", "hits", "misses", "hit_rate", "sets", "deletes", "errors", "undecodable",
              "latency"}
LATENCY_KEYS = {"count", "mean_us", "p50_us", "p99_us"}


def test_stats_shape(build: Build) -> None:
    """cache.stats() has namespaces -> tiers/store/bus_errors and per-tier size info; counts add
    up."""
    rig = build("memory+redis", {"s": 1})
    rig.ns.set("k", 1)
    rig.ns.get("k")
    rig.ns.get("s")
    rig.ns.get("absent")
    rig.ns.delete("gone")
    stats = rig.cache.stats()
    assert set(stats) == {"namespaces", "tiers"}
    ns = stats["namespaces"]["ns"]
    assert {"tiers", "store", "bus_errors"} <= set(ns)
    assert list(ns["tiers"]) == ["L1:memory", "L2:redis"]
    for layer in [*ns["tiers"].values(), ns["store"]]:
        assert set(layer) >= LAYER_KEYS
        assert set(layer["latency"]) == LATENCY_KEYS
        assert layer["requests"] == layer["hits"] + layer["misses"]
    l1, l2, store = ns["tiers"]["L1:memory"], ns["tiers"]["L2:redis"], ns["store"]
    assert (l1["hits"], l1["misses"]) == (1, 2)
    assert (l2["hits"], l2["misses"]) == (0, 2)
    assert (store["hits"], store["misses"]) == (1, 1)
    assert l1["hit_rate"] == pytest.approx(1 / 3)
    assert l1["sets"] == 1 and store["sets"] == 1
    assert l1["deletes"] >= 1 and l2["deletes"] >= 1 and store["deletes"] == 1
    assert stats["tiers"]["L1:memory"]["kind"] == "MemoryTier"
    assert stats["tiers"]["L1:memory"]["entries"] == 2
    assert "evictions" in stats["tiers"]["L1:memory"]
    assert stats["tiers"]["L2:redis"]["kind"] == "RedisTier"
    assert ns == rig.ns.stats()


def test_stats_of_a_namespace_without_store(build: Build) -> None:
    """A pure-cache namespace reports store as None and fresh layers with no requests."""
    rig = build("memory")
    ns = rig.cache.stats()["namespaces"]["ns"]
    assert ns["store"] is None
    assert ns["tiers"]["L1:memory"]["requests"] == 0
    assert ns["tiers"]["L1:memory"]["hit_rate"] is None


def _keys_sharing_a_fence_slot(ns: tc.Namespace) -> tuple[str, str]:
    """Two keys whose tier keys hash to one fence slot (in this process's hash seed)."""
    from tiercache._engine.flight import FENCE_SLOTS

    seen: dict[int, str] = {}
    for i in range(1_000_000):
        key = f"k{i}"
        slot = hash(ns.tier_key(key)) % FENCE_SLOTS
        if slot in seen:
            return seen[slot], key
        seen[slot] = key
    raise AssertionError("no two keys share a slot")  # pragma: no cover


def test_set_many_of_keys_sharing_a_fence_slot_keeps_both() -> None:
    """Keys of one set_many sharing a fence slot are not taken for raced: a pure cache keeps
    both."""
    with tc.Cache(tiers=[tc.MemoryTier()], bus=False) as cache:
        ns = cache.namespace("pure")
        a, b = _keys_sharing_a_fence_slot(ns)
        ns.set_many({a: 1, b: 2})
        assert (ns.get(a), ns.get(b)) == (1, 2)
        assert ns.stats()["tiers"]["L1:memory"]["sets"] == 2


def test_fence_moved_alone_excludes_a_key_another_change_touched() -> None:
    """Between a change's two bumps, a key bumped by someone else is excluded; its slot-mates are
    not."""
    from tiercache._engine.flight import Fence

    fence = Fence(slots=1)  # every key shares the one slot
    keys = ["a", "b"]
    first = fence.bump(keys)
    second = fence.bump(keys)
    assert fence.moved_alone(first, second, keys) == {"a", "b"}
    first = fence.bump(keys)
    fence.bump(["c"])  # another change, in the same slot
    second = fence.bump(keys)
    assert fence.moved_alone(first, second, keys) == set()
    first = fence.bump(keys)
    fence.bump_all()
    assert fence.moved_alone(first, fence.bump(keys), keys) == set()
