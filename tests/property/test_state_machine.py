"""The shipped state machines, run over every tier stack, and the strategies they draw from."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis.stateful import run_state_machine_as_test

from tiercache import MappingStore, MemoryTier, MsgpackSerializer, RedisTier
from tiercache.keys import check_name, decode_key, encode_key
from tiercache.testing.state_machine import CacheMachine, TwoProcessTTLMachine, same_value
from tiercache.testing.strategies import keys, namespace_names, values

# database=None: no .hypothesis directory in the source tree.
MACHINE = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
REAL = settings(MACHINE, max_examples=25)
"""Real-Redis runs: each example pays network round trips; the embedded runs cover more."""
PROPERTY = settings(max_examples=100, deadline=None, database=None)


def test_memory_over_mapping_store() -> None:
    """One process, [MemoryTier] over a MappingStore: every read equals the store."""
    machine = CacheMachine.configure("MemoryOverStore", tiers=lambda: [MemoryTier()],
                                     store=MappingStore)
    run_state_machine_as_test(machine, settings=MACHINE)


def test_small_memory_and_ttl_over_mapping_store() -> None:
    """One process, an evicting L1 with a namespace TTL over a store: reads still equal the
    store."""
    machine = CacheMachine.configure("SmallMemoryOverStore", tiers=lambda: [MemoryTier(maxsize=2)],
                                     store=MappingStore, ttl=5.0)
    run_state_machine_as_test(machine, settings=MACHINE)


def test_memory_and_embedded_redis_over_mapping_store() -> None:
    """One process, [MemoryTier, embedded RedisTier] over a store: every read equals the store."""
    machine = CacheMachine.configure(
        "MemoryRedisOverStore",
        tiers=lambda: [MemoryTier(), RedisTier.embedded()],
        store=MappingStore,
    )
    run_state_machine_as_test(machine, settings=MACHINE)


def test_evicting_memory_and_embedded_redis_with_ttl_over_mapping_store() -> None:
    """One process, an evicting L1 backfilled from embedded Redis, with a TTL: reads equal the
    store."""
    machine = CacheMachine.configure(
        "SmallMemoryRedisOverStore",
        tiers=lambda: [MemoryTier(maxsize=2), RedisTier.embedded()],
        store=MappingStore,
        ttl=10.0,
    )
    run_state_machine_as_test(machine, settings=MACHINE)


def test_memory_and_real_redis_over_mapping_store(redis_url: str) -> None:
    """One process, [MemoryTier, real RedisTier] over a store: every read equals the store."""
    machine = CacheMachine.configure(
        "MemoryRealRedisOverStore",
        tiers=lambda: [MemoryTier(), RedisTier(redis_url)],
        store=MappingStore,
    )
    run_state_machine_as_test(machine, settings=REAL)


def test_memory_and_real_redis_with_bus(redis_url: str) -> None:
    """One process with its invalidation bus running: its own messages never break coherence."""
    machine = CacheMachine.configure(
        "MemoryRealRedisBus",
        tiers=lambda: [MemoryTier(), RedisTier(redis_url)],
        store=MappingStore,
        bus=True,
    )
    run_state_machine_as_test(machine, settings=settings(MACHINE, max_examples=5))


def test_pure_memory_cache_with_ttl() -> None:
    """A pure cache [MemoryTier] with a TTL: set, delete, invalidate and expiry are exact."""
    machine = CacheMachine.configure("PureMemory", tiers=lambda: [MemoryTier()], ttl=10.0)
    run_state_machine_as_test(machine, settings=MACHINE)


def test_pure_two_memory_tiers_with_ttls() -> None:
    """A pure cache of two MemoryTiers with different TTLs: certain until the shorter, gone after
    the longer."""
    machine = CacheMachine.configure(
        "PureTwoMemory", tiers=lambda: [MemoryTier(ttl=2.5), MemoryTier(ttl=10.0)]
    )
    run_state_machine_as_test(machine, settings=MACHINE)


def test_pure_memory_and_embedded_redis_cache() -> None:
    """A pure cache [MemoryTier, embedded RedisTier] without TTL: reads follow set/delete/invalidate
    exactly."""
    machine = CacheMachine.configure(
        "PureMemoryRedis", tiers=lambda: [MemoryTier(), RedisTier.embedded()]
    )
    run_state_machine_as_test(machine, settings=MACHINE)


def test_pure_memory_and_embedded_redis_cache_with_ttl() -> None:
    """A pure cache with Redis and a TTL: exact before the L1 TTL, value or MISSING after it."""
    machine = CacheMachine.configure(
        "PureMemoryRedisTTL", tiers=lambda: [MemoryTier(), RedisTier.embedded()], ttl=10.0
    )
    run_state_machine_as_test(machine, settings=MACHINE)


def test_pure_memory_and_real_redis_cache(redis_url: str) -> None:
    """A pure cache [MemoryTier, real RedisTier] without TTL: reads follow set/delete/invalidate
    exactly."""
    machine = CacheMachine.configure(
        "PureMemoryRealRedis", tiers=lambda: [MemoryTier(), RedisTier(redis_url)]
    )
    run_state_machine_as_test(machine, settings=REAL)


def test_two_processes_under_ttl() -> None:
    """Two caches sharing embedded Redis and a store under TTL(T): reads are never staler than T."""
    run_state_machine_as_test(TwoProcessTTLMachine, settings=settings(MACHINE, max_examples=80))


def test_two_processes_under_ttl_on_real_redis(redis_url: str) -> None:
    """Two caches sharing the real Redis and a store under TTL(T): reads are never staler than T."""

    class RealRedisTwoProcess(TwoProcessTTLMachine):
        def make_l2(self) -> Any:
            return RedisTier(redis_url)

    run_state_machine_as_test(RealRedisTwoProcess, settings=REAL)


# -- the strategies the machines draw from ------------------------------------


@PROPERTY
@given(values())
def test_values_round_trip_through_msgpack(value: Any) -> None:
    """Every drawn value survives the default serializer with its exact types."""
    serializer = MsgpackSerializer()
    assert same_value(value, serializer.loads(serializer.dumps(value)))


@PROPERTY
@given(keys())
def test_keys_are_valid_and_canonical(key: Any) -> None:
    """Every drawn key encodes, and decodes back to itself."""
    assert same_value(key, decode_key(encode_key(key)))


@PROPERTY
@given(namespace_names())
def test_namespace_names_are_accepted(name: str) -> None:
    """Every drawn namespace name passes the name check."""
    assert check_name("namespace", name) == name


def test_same_value_is_strict() -> None:
    """same_value tells apart values that == confuses (1/True/1.0, tuple/list, Decimal scale)."""
    assert not same_value(1, True) and not same_value(1, 1.0)
    assert not same_value((1,), [1]) and not same_value(0.0, -0.0)
    assert not same_value(Decimal("1.0"), Decimal("1.00"))
    assert not same_value({1: "a"}, {1.0: "a"}) and not same_value({1}, {1.0})
    aware = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    assert not same_value(aware, aware.astimezone(dt.timezone(dt.timedelta(hours=1))))
    assert same_value({"a": [1, (2, None)], 3: {b"x"}}, {"a": [1, (2, None)], 3: {b"x"}})
