"""A known workload through a real Cache (L1 + the real Redis + a store), and its exact counts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import tiercache as tc

L1_HITS = 7
L2_HITS = 4
STORE_LOADS = 3  # keys the store has; one more key it has not
WRITE_BACK_SETS = 5

L2_KEYS = [f"warm:{i}" for i in range(L2_HITS)]
STORE_KEYS = [f"cold:{i}" for i in range(STORE_LOADS)]
ABSENT = "absent"
ORDER_KEYS = [f"order:{i}" for i in range(WRITE_BACK_SETS)]
EVERY_KEY = [*L2_KEYS, *STORE_KEYS, ABSENT, *ORDER_KEYS]

EXPECTED_REQUESTS = {
    ("L1:memory", "hit"): L1_HITS,
    ("L1:memory", "miss"): L2_HITS + STORE_LOADS + 1,
    ("L2:redis", "hit"): L2_HITS,
    ("L2:redis", "miss"): STORE_LOADS + 1,
    ("store", "hit"): STORE_LOADS,
    ("store", "miss"): 1,
}
"""Requests of namespace "users" by (layer, result) after the workload."""


def users_store() -> tc.MappingStore:
    return tc.MappingStore({key: {"key": key} for key in [*L2_KEYS, *STORE_KEYS]})


def tiers(redis_url: str) -> list[Any]:
    return [tc.MemoryTier(maxsize=1000), tc.RedisTier(redis_url, timeout=1.0)]


@pytest.fixture
def warm_redis(redis_url: str, prefix: str) -> None:
    """Another cache on the same Redis and prefix loads L2_KEYS: they sit in Redis, not in our L1."""
    with tc.Cache(tiers=tiers(redis_url), store=users_store(), prefix=prefix) as other:
        users = other.namespace("users")
        for key in L2_KEYS:
            assert users.get(key) == {"key": key}


@pytest.fixture
def cache(redis_url: str, prefix: str, warm_redis: None) -> Iterator[tc.Cache]:
    """The cache under test, before the workload."""
    with tc.Cache(tiers=tiers(redis_url), store=users_store(), prefix=prefix) as made:
        yield made


@pytest.fixture
def acache(redis_url: str, prefix: str, warm_redis: None) -> Iterator[tc.AsyncCache]:
    """The AsyncCache under test, before the workload (closed by the sync close at teardown)."""
    made = tc.AsyncCache(tiers=tiers(redis_url), store=users_store(), prefix=prefix)
    yield made
    tc.Cache.close(made)


class Workload:
    """The workload and its exact counts, handed to tests by the ``workload`` fixture."""

    l1_hits = L1_HITS
    l2_hits = L2_HITS
    store_loads = STORE_LOADS
    write_back_sets = WRITE_BACK_SETS
    keys = EVERY_KEY
    requests = EXPECTED_REQUESTS

    @staticmethod
    def drive(cache: tc.Cache) -> None:
        """L2 hits, store loads, one absent key, L1 hits, then write-back sets flushed."""
        users = cache.namespace("users")
        for key in L2_KEYS:
            assert users.get(key) == {"key": key}
        for key in STORE_KEYS:
            assert users.get(key) == {"key": key}
        assert users.get(ABSENT) is None
        for _ in range(L1_HITS):
            assert users.get(STORE_KEYS[0]) == {"key": STORE_KEYS[0]}
        orders = cache.namespace(
            "orders", write=tc.WriteBack(flush_interval=3600), store=tc.MappingStore()
        )
        for key in ORDER_KEYS:
            orders.set(key, 1)
        cache.flush()

    @staticmethod
    async def adrive(cache: tc.AsyncCache) -> None:
        """``drive`` awaited through AsyncCache's namespaces."""
        users = cache.namespace("users")
        for key in L2_KEYS:
            assert await users.get(key) == {"key": key}
        for key in STORE_KEYS:
            assert await users.get(key) == {"key": key}
        assert await users.get(ABSENT) is None
        for _ in range(L1_HITS):
            assert await users.get(STORE_KEYS[0]) == {"key": STORE_KEYS[0]}
        orders = cache.namespace(
            "orders", write=tc.WriteBack(flush_interval=3600), store=tc.MappingStore()
        )
        for key in ORDER_KEYS:
            await orders.set(key, 1)
        await cache.flush()


@pytest.fixture
def workload() -> Workload:
    """The known workload (``drive``/``adrive``) and the counts it must produce."""
    return Workload()
