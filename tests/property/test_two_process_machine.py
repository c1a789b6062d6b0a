"""Two caches (two processes' views) over one real Redis and one store, against a model.

Each cache has its own L1 (MemoryTier) and its own RedisTier on the real
server at 127.0.0.1:6379; both share one prefix and one MappingStore. After
every change the test waits (bounded) for the other cache's bus to deliver
it; from then on every read, on either cache, must equal the store (the
model): no stale read after the propagation window.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

import tiercache as tc

MACHINE = settings(
    max_examples=25,
    stateful_step_count=20,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
PROPAGATION_BOUND = 1.0
"""Seconds to wait for the other cache's bus to deliver a change."""
SETTLE = 0.003
"""Seconds after delivery is counted, for the listener to finish applying it."""

KEYS = st.sampled_from(["a", "b", "c", 7, ("t", 1)])
VALUES = st.one_of(st.integers(-5, 5), st.text(max_size=3), st.none())
SIDE = st.sampled_from([0, 1])


def _close_fast(cache: tc.Cache, url: str) -> None:
    """Close a cache while waking its bus listener (it blocks in XREAD otherwise)."""
    client = redis.Redis.from_url(url, socket_timeout=1.0)
    done = threading.Event()

    def wake() -> None:
        for _ in range(500):  # bounded: 5 s at most
            if done.wait(0.005):
                return
            try:
                client.xadd(f"{cache.prefix}:#bus", {"m": b"wake"}, maxlen=1000, approximate=True)
            except redis.RedisError:
                return

    thread = threading.Thread(target=wake, daemon=True)
    thread.start()
    try:
        cache.close()
    finally:
        done.set()
        thread.join(5)
        client.close()


@pytest.fixture
def two_caches(redis_url: str, prefix: str) -> Iterator[list[tc.Cache]]:
    """Two caches of one prefix, each with its own L1 and its own client on the real Redis."""
    caches = [
        tc.Cache(tiers=[tc.MemoryTier(), tc.RedisTier(redis_url, timeout=1.0)], prefix=prefix)
        for _ in range(2)
    ]
    try:
        yield caches
    finally:
        for cache in caches:
            _close_fast(cache, redis_url)


def machine_for(caches: list[tc.Cache], invalidation: Any) -> type[RuleBasedStateMachine]:
    """A state machine class over ``caches``: each example gets a fresh namespace and store."""
    names = itertools.count()

    class TwoProcessMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.model: dict[Any, Any] = {}
            store = tc.MappingStore(self.model)  # the model *is* the store's mapping
            name = f"m{next(names)}"
            self.views = [
                cache.namespace(name, write=tc.WriteThrough(), invalidation=invalidation(),
                                store=store)
                for cache in caches
            ]
            self.buses = [cache._bus for cache in caches]  # delivery counters only
            assert all(bus is not None for bus in self.buses)

        def _changed(self, side: int, change: Any) -> None:
            """Run a change on one view, then wait for the other view's bus to deliver it."""
            other = self.buses[1 - side]
            before = other.received
            change(self.views[side])
            deadline = time.monotonic() + PROPAGATION_BOUND
            for _ in range(100_000):  # bounded; the deadline ends it sooner
                if other.received > before or time.monotonic() >= deadline:
                    break
                time.sleep(0.0005)
            time.sleep(SETTLE)

        def _expected(self, key: Any) -> Any:
            return self.model.get(key, tc.MISSING)

        @rule(side=SIDE, key=KEYS, value=VALUES)
        def set(self, side: int, key: Any, value: Any) -> None:
            self._changed(side, lambda ns: ns.set(key, value))

        @rule(side=SIDE, items=st.dictionaries(KEYS, VALUES, min_size=1, max_size=3))
        def set_many(self, side: int, items: dict[Any, Any]) -> None:
            self._changed(side, lambda ns: ns.set_many(items))

        @rule(side=SIDE, key=KEYS)
        def delete(self, side: int, key: Any) -> None:
            self._changed(side, lambda ns: ns.delete(key))

        @rule(side=SIDE, key=KEYS)
        def invalidate(self, side: int, key: Any) -> None:
            self._changed(side, lambda ns: ns.invalidate(key))

        @rule(side=SIDE)
        def invalidate_all(self, side: int) -> None:
            self._changed(side, lambda ns: ns.invalidate_all())

        @rule(side=SIDE, key=KEYS)
        def get(self, side: int, key: Any) -> None:
            got = self.views[side].get(key, tc.MISSING)
            assert got == self._expected(key), (
                f"view {side} read {key!r} = {got!r}, the store holds {self._expected(key)!r}"
            )

        @rule(side=SIDE, keys=st.lists(KEYS, min_size=1, max_size=4))
        def get_many(self, side: int, keys: list[Any]) -> None:
            got = self.views[side].get_many(keys)
            expected = {k: self.model[k] for k in keys if k in self.model}
            assert got == expected, f"view {side} get_many {got!r}, the store holds {expected!r}"

        @invariant()
        def both_views_read_the_store(self) -> None:
            for side, view in enumerate(self.views):
                for key in ("a", 7):
                    got = view.get(key, tc.MISSING)
                    assert got == self._expected(key), (
                        f"view {side} read {key!r} = {got!r}, "
                        f"the store holds {self._expected(key)!r}"
                    )

    return TwoProcessMachine


def test_two_views_purge(two_caches: list[tc.Cache]) -> None:
    """WriteThrough + Purge over two views: no read is stale once the bus delivered the change."""
    run_state_machine_as_test(machine_for(two_caches, tc.Purge), settings=MACHINE)


def test_two_views_versioned(two_caches: list[tc.Cache]) -> None:
    """WriteThrough + Versioned over two views: no read is stale once the bus delivered the
    change."""
    run_state_machine_as_test(machine_for(two_caches, tc.Versioned), settings=MACHINE)
