"""Bad input: the right TiercacheError subclass, and nothing changed in any tier or the store."""

from __future__ import annotations

import builtins
import copy
import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

import tiercache as tc
from tiercache.errors import (
    ConfigurationError,
    InvalidKeyError,
    SerializationError,
    ValueTooLargeError,
)
from tiercache.serialization import MsgpackSerializer
from tiercache.testing.clock import FakeClock

LIMIT = 200
"""max_value_bytes of the namespace under test."""


class Custom:
    pass


class MyDict(dict):  # type: ignore[type-arg]
    pass


@dataclass
class World:
    """A cache with L1, real Redis and a store, holding a few values everywhere."""

    cache: tc.Cache
    ns: tc.Namespace
    memory: tc.MemoryTier
    store: tc.MappingStore
    clock: FakeClock
    redis_client: Any
    prefix: str

    KNOWN = ("a", "b", "c", "new", "new1", "new2", "big")

    def snapshot(self) -> dict[str, Any]:
        full = [f"{self.prefix}:ns:s:{k}" for k in self.KNOWN]
        redis_keys = sorted(self.redis_client.scan_iter(match=f"{self.prefix}:*", count=1000))
        return {
            "l1_len": len(self.memory),
            "l1": self.memory.get_many(full, self.clock()),
            "redis": {k: self.redis_client.get(k) for k in redis_keys},
            "store": copy.deepcopy(dict(self.store.mapping)),
            "namespaces": sorted(self.cache.namespaces),
            "stats": {
                name: {
                    layer: {k: v for k, v in counters.items() if k != "latency"}
                    for layer, counters in [*ns["tiers"].items(), ("store", ns["store"])]
                }
                for name, ns in self.cache.stats()["namespaces"].items()
            },
        }


@pytest.fixture
def world(redis_url: str, redis_client: Any, prefix: str) -> Iterator[World]:
    clock = FakeClock()
    memory = tc.MemoryTier()
    store = tc.MappingStore({"a": 1, "b": [1, 2], "c": {"x": (1, 2)}})
    cache = tc.Cache(
        tiers=[memory, tc.RedisTier(redis_url)], store=store, prefix=prefix, clock=clock, bus=False
    )
    ns = cache.namespace("ns", max_value_bytes=LIMIT)
    assert ns.get_many(["a", "b", "c"]) == {"a": 1, "b": [1, 2], "c": {"x": (1, 2)}}
    ns.set("c", {"x": (3, 4)})
    w = World(cache, ns, memory, store, clock, redis_client, prefix)
    before = w.snapshot()
    assert before["l1_len"] == 3 and len(before["redis"]) >= 2  # the fixture really filled them
    yield w
    cache.close()


def unchanged(world: World, action: Callable[[], Any], error: type[BaseException]) -> BaseException:
    """Run ``action``; it must raise ``error`` (a TiercacheError) and change nothing observable."""
    before = world.snapshot()
    with pytest.raises(error) as info:
        action()
    assert isinstance(info.value, tc.TiercacheError), (
        f"{type(info.value).__name__} is not a TiercacheError"
    )
    assert world.snapshot() == before
    return info.value


# -- values ------------------------------------------------------------------------

BAD_VALUES = {
    "object()": object(),
    "custom class": Custom(),
    "dict subclass": MyDict(a=1),
    "nested bad": {"ok": [1, {"deep": Custom()}]},
    "bad in set": {1, Custom()},
    "int too big": 2**64,
    "complex": 1j,
}


@pytest.mark.parametrize("key", ["a", "new"], ids=["existing key", "new key"])
@pytest.mark.parametrize("value", list(BAD_VALUES.values()), ids=list(BAD_VALUES))
def test_unserializable_value_in_set_changes_nothing(world: World, value: Any, key: str) -> None:
    """set() of a value the serializer refuses raises SerializationError before touching
    anything."""
    unchanged(world, lambda: world.ns.set(key, value), SerializationError)


@pytest.mark.parametrize("value", list(BAD_VALUES.values()), ids=list(BAD_VALUES))
def test_one_bad_value_in_set_many_writes_nothing(world: World, value: Any) -> None:
    """set_many with one unserializable value among good ones writes none of them."""
    items = {"new1": 1, "a": "replaced", "bad": value, "new2": 2}
    unchanged(world, lambda: world.ns.set_many(items), SerializationError)


def test_value_over_max_value_bytes_is_refused(world: World) -> None:
    """A value larger than max_value_bytes once serialized raises ValueTooLargeError; nothing is
    written."""
    big = "x" * LIMIT
    assert len(MsgpackSerializer().dumps(big)) > LIMIT
    err = unchanged(world, lambda: world.ns.set("big", big), ValueTooLargeError)
    assert isinstance(err, SerializationError)
    unchanged(world, lambda: world.ns.set("a", big), ValueTooLargeError)
    unchanged(
        world, lambda: world.ns.set_many({"new1": 1, "big": big, "new2": 2}), ValueTooLargeError
    )


def test_value_of_exactly_max_value_bytes_is_accepted(world: World) -> None:
    """The limit is inclusive: a value serializing to exactly max_value_bytes is stored."""
    overhead = len(MsgpackSerializer().dumps("x" * 100)) - 100
    value = "x" * (LIMIT - overhead)
    assert len(MsgpackSerializer().dumps(value)) == LIMIT
    world.ns.set("big", value)
    assert world.ns.get("big") == value
    assert world.store.mapping["big"] == value


@pytest.mark.parametrize(
    "items", [[("new", 1)], "ab", None, 5, (x for x in [("new", 1)]), {"new", "a"}],
    ids=["list of pairs", "str", "None", "int", "generator", "set"],
)
def test_set_many_with_a_non_mapping_changes_nothing(world: World, items: Any) -> None:
    """set_many of something that is not a mapping raises a TiercacheError and writes nothing."""
    unchanged(world, lambda: world.ns.set_many(items), tc.TiercacheError)


# -- keys --------------------------------------------------------------------------

BAD_KEYS = {
    "float": 1.5,
    "bool": True,
    "None": None,
    "list": ["a"],
    "object": object(),
    "dict": {"a": 1},
    "tuple with float": ("a", 1.5),
    "tuple with list": ("a", ["b"]),
}

OPERATIONS: dict[str, Callable[[tc.Namespace, Any], Any]] = {
    "get": lambda ns, k: ns.get(k),
    "get default": lambda ns, k: ns.get(k, default=tc.MISSING),
    "set": lambda ns, k: ns.set(k, "value"),
    "delete": lambda ns, k: ns.delete(k),
    "invalidate": lambda ns, k: ns.invalidate(k),
    "get_many": lambda ns, k: ns.get_many([k]),
    "get_many among good": lambda ns, k: ns.get_many(["a", k, "b"]),
    "get_many loader": lambda ns, k: ns.get_many(["new", k], loader=lambda keys: {"new": 1}),
    "delete_many among good": lambda ns, k: ns.delete_many(["a", k]),
    "invalidate_many among good": lambda ns, k: ns.invalidate_many(["a", k]),
}


@pytest.mark.parametrize("op", list(OPERATIONS), ids=list(OPERATIONS))
@pytest.mark.parametrize("key", list(BAD_KEYS.values()), ids=list(BAD_KEYS))
def test_unsupported_key_raises_invalid_key_error_and_changes_nothing(
    world: World, key: Any, op: str
) -> None:
    """float, bool, None, list, dict, object keys (alone or in tuples) raise InvalidKeyError
    everywhere."""
    unchanged(world, lambda: OPERATIONS[op](world.ns, key), InvalidKeyError)


@pytest.mark.parametrize("key", list(BAD_KEYS.values()), ids=list(BAD_KEYS))
def test_bad_key_in_set_many_writes_nothing(world: World, key: Any) -> None:
    """set_many with one bad key among good ones raises InvalidKeyError and writes nothing."""
    def action() -> None:
        items = {"new1": 1, "new2": 2}
        try:
            items[key] = 3
        except TypeError:  # an unhashable key cannot be in a dict: pass a mapping that holds it
            world.ns.set_many(_PairsMapping([("new1", 1), (key, 3), ("new2", 2)]))
            return
        world.ns.set_many(items)

    unchanged(world, action, InvalidKeyError)


class _PairsMapping(Mapping[Any, Any]):
    """A read-only Mapping over pairs, so that it can hold unhashable keys."""

    def __init__(self, pairs: list[tuple[Any, Any]]) -> None:
        self._pairs = pairs

    def __iter__(self) -> Iterator[Any]:
        return iter([k for k, _ in self._pairs])

    def __len__(self) -> int:
        return len(self._pairs)

    def __getitem__(self, key: Any) -> Any:
        for k, v in self._pairs:
            if k is key or (type(k) is type(key) and k == key):
                return v
        raise KeyError(key)


@pytest.mark.parametrize(
    "keys", [[1, True], [True, 1], [1, 1.0], [0, False], ["a", 1, 1.0]], ids=repr
)
@pytest.mark.parametrize("op", ["get_many", "delete_many", "invalidate_many"])
def test_bad_keys_equal_to_good_ones_are_not_silently_merged(
    world: World, keys: list[Any], op: str
) -> None:
    """A bool or float key equal to an int key (True == 1) is refused, not deduplicated away."""
    unchanged(world, lambda: getattr(world.ns, op)(keys), InvalidKeyError)


@pytest.mark.parametrize("op", ["get", "set", "delete", "invalidate"])
def test_str_key_with_lone_surrogate_works_or_is_refused_cleanly(world: World, op: str) -> None:
    """A str key holding a lone surrogate is either a working key or an InvalidKeyError that changes
    nothing."""
    key = "bad\ud800"
    before = world.snapshot()
    try:
        OPERATIONS[op](world.ns, key)
    except InvalidKeyError:
        assert world.snapshot() == before
        return
    except Exception as exc:  # noqa: BLE001 - anything else escaping is the bug tested here
        pytest.fail(f"{op}({key!r}) raised {type(exc).__name__}: {exc}")
    if op == "set":
        assert world.ns.get(key) == "value"


# -- names ---------------------------------------------------------------------------

BAD_NAMES = ["", "a:b", "a b", "x" * 65, None, "a*", "#ver", "é", 42]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_malformed_namespace_name_is_refused(world: World, name: Any) -> None:
    """cache.namespace() with an empty, too long, non-str or ':'/space/glob name raises
    ConfigurationError."""
    unchanged(world, lambda: world.cache.namespace(name), ConfigurationError)


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_malformed_prefix_is_refused(name: Any) -> None:
    """Cache(prefix=...) with a malformed prefix raises ConfigurationError."""
    with pytest.raises(ConfigurationError):
        tc.Cache(tiers=[tc.MemoryTier()], prefix=name)


# -- TTLs and options ------------------------------------------------------------------

BAD_TTLS = [-1, 0, 0.0, -0.5, float("nan"), float("inf"), float("-inf"), timedelta(0),
            timedelta(seconds=-1), "5", True, [5]]


@pytest.mark.parametrize("ttl", BAD_TTLS, ids=repr)
@pytest.mark.parametrize("option", ["ttl", "negative_ttl"])
def test_bad_namespace_ttl_is_refused_and_creates_nothing(
    world: World, ttl: Any, option: str
) -> None:
    """namespace(ttl=...) / negative_ttl with a non-positive, non-finite or non-number raises
    ConfigurationError."""
    unchanged(world, lambda: world.cache.namespace("fresh", **{option: ttl}), ConfigurationError)
    assert world.cache.namespace("fresh").config.ttl is None


@pytest.mark.parametrize("ttl", BAD_TTLS, ids=repr)
def test_bad_memory_tier_ttl_is_refused(ttl: Any) -> None:
    """MemoryTier(ttl=...) with a bad TTL raises ConfigurationError."""
    with pytest.raises(ConfigurationError):
        tc.MemoryTier(ttl=ttl)


@pytest.mark.parametrize("ttl", BAD_TTLS, ids=repr)
def test_bad_redis_tier_ttl_is_refused(ttl: Any) -> None:
    """RedisTier(ttl=...) with a bad TTL raises ConfigurationError."""
    with pytest.raises(ConfigurationError):
        tc.RedisTier(ttl=ttl)


@pytest.mark.parametrize("ttl", [*BAD_TTLS, None], ids=repr)
def test_bad_ttl_strategy_is_refused(ttl: Any) -> None:
    """TTL(...) needs a positive, finite time: anything else (None included) raises
    ConfigurationError."""
    with pytest.raises(ConfigurationError):
        tc.TTL(ttl)


@pytest.mark.parametrize(
    "options",
    [{"max_value_bytes": 0}, {"max_value_bytes": -1}, {"max_value_bytes": True},
     {"max_value_bytes": 1.5}, {"write": "through"}, {"invalidation": "purge"},
     {"serializer": "msgpack"}, {"store": {"a": 1}}],
    ids=repr,
)
def test_bad_namespace_options_are_refused(world: World, options: dict[str, Any]) -> None:
    """Options of the wrong type or value raise ConfigurationError and create no namespace."""
    unchanged(world, lambda: world.cache.namespace("fresh", **options), ConfigurationError)


# -- the error tree ------------------------------------------------------------------------


def _public_exceptions() -> dict[str, type[BaseException]]:
    """Exception classes that tiercache exposes: top level and every importable submodule."""
    found: dict[str, type[BaseException]] = {}
    modules = [tc]
    for info in pkgutil.walk_packages(tc.__path__, "tiercache."):
        if any(part.startswith("_") for part in info.name.split(".")[1:]):
            continue
        try:
            modules.append(importlib.import_module(info.name))
        except ImportError:  # an optional extra that is not installed
            continue
    for module in modules:
        names = getattr(module, "__all__", [n for n in dir(module) if not n.startswith("_")])
        for name in names:
            obj = getattr(module, name, None)
            if (inspect.isclass(obj) and issubclass(obj, BaseException)
                    and obj.__module__.startswith("tiercache")):
                found[f"{module.__name__}.{name}"] = obj
    return found


def test_every_public_exception_is_a_tiercache_error() -> None:
    """Every exception class tiercache exposes derives from TiercacheError."""
    exceptions = _public_exceptions()
    assert "tiercache.TiercacheError" in exceptions
    outside = [name for name, cls in exceptions.items() if not issubclass(cls, tc.TiercacheError)]
    assert outside == []


def test_no_public_exception_shadows_a_builtin() -> None:
    """No exception tiercache exposes is named like a builtin (TimeoutError, ConnectionError,
    ...)."""
    shadowing = [name for name in _public_exceptions() if hasattr(builtins, name.rsplit(".", 1)[1])]
    assert shadowing == []


def test_documented_errors_are_in_the_tree() -> None:
    """The documented error names exist at top level with the documented parents."""
    assert issubclass(tc.ConfigurationError, tc.TiercacheError)
    assert issubclass(tc.SerializationError, tc.TiercacheError)
    assert issubclass(tc.ValueTooLargeError, tc.SerializationError)
    assert issubclass(tc.InvalidKeyError, tc.TiercacheError)
    assert issubclass(tc.TierError, tc.TiercacheError)
    assert issubclass(tc.TierUnavailable, tc.TierError)
    assert issubclass(tc.StoreError, tc.TiercacheError)
