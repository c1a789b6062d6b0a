"""Every write policy x every invalidation strategy x every tier stack runs the policy contract.

27 cells: [WriteThrough, WriteBack, WriteAround] x [TTL(30), Purge, Versioned]
x [L1, L2, L1+L2], the Redis tiers on the real server at 127.0.0.1:6379.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis

from tiercache import (
    TTL,
    Cache,
    Invalidation,
    MemoryTier,
    Purge,
    RedisTier,
    Tier,
    Versioned,
    WriteAround,
    WriteBack,
    WritePolicy,
    WriteThrough,
)
from tiercache.testing.swap_contract import SwapContract


def wake_bus_while(action: Callable[[], Any], url: str, stream: str) -> None:
    """Run ``action`` (a close) while adding entries to the bus stream every few ms.

    The bus listener blocks in XREAD for up to half a second and only sees
    its stop flag when that returns; an entry it ignores (not tiercache's
    encoding) wakes it, so closing takes milliseconds instead.
    """
    client = redis.Redis.from_url(url, socket_timeout=1.0)
    done = threading.Event()

    def wake() -> None:
        for _ in range(500):  # bounded: 5 s at most
            if done.wait(0.005):
                return
            try:
                client.xadd(stream, {"m": b"wake"}, maxlen=1000, approximate=True)
            except redis.RedisError:
                return

    thread = threading.Thread(target=wake, daemon=True)
    thread.start()
    try:
        action()
    finally:
        done.set()
        thread.join(5)
        client.close()

WRITES: dict[str, Callable[[], WritePolicy]] = {
    "WriteThrough": WriteThrough,
    # A long interval: the ManualScheduler runs flushes only when told anyway.
    "WriteBack": lambda: WriteBack(flush_interval=60.0),
    "WriteAround": WriteAround,
}
INVALIDATIONS: dict[str, Callable[[], Invalidation]] = {
    "TTL": lambda: TTL(30),
    "Purge": Purge,
    "Versioned": Versioned,
}
STACKS = ("L1", "L2", "L1L2")


class _LocalCell(SwapContract):
    """A cell whose tiers are all in the process."""

    write_name = ""
    invalidation_name = ""
    stack = "L1"

    def make_write(self) -> WritePolicy:
        return WRITES[self.write_name]()

    def make_invalidation(self) -> Invalidation:
        return INVALIDATIONS[self.invalidation_name]()

    def make_tiers(self, l1_maxsize: int) -> list[Tier]:
        return [MemoryTier(maxsize=l1_maxsize)]

    @pytest.fixture
    def cache_prefix(self, prefix: str) -> str:
        return prefix


class _RedisCell(_LocalCell):
    """A cell with the real Redis as L2 (or as the only tier); keys removed after each test."""

    url = ""

    @pytest.fixture
    def cache_prefix(self, redis_url: str, prefix: str) -> str:
        # Asking for redis_url makes the prefix fixture remove the test's keys.
        self.url = redis_url
        return prefix

    def close_cache(self, cache: Cache) -> None:
        wake_bus_while(cache.close, self.url, f"{cache.prefix}:#bus")

    def make_tiers(self, l1_maxsize: int) -> list[Tier]:
        l2 = RedisTier(self.url, timeout=1.0)
        if self.stack == "L2":
            return [l2]
        return [MemoryTier(maxsize=l1_maxsize), l2]


def _cells() -> dict[str, type[Any]]:
    classes: dict[str, type[Any]] = {}
    for write in WRITES:
        for invalidation in INVALIDATIONS:
            for stack in STACKS:
                base = _LocalCell if stack == "L1" else _RedisCell
                name = f"Test{write}{invalidation}{stack}"
                classes[name] = type(
                    name,
                    (base,),
                    {
                        "write_name": write,
                        "invalidation_name": invalidation,
                        "stack": stack,
                        "__doc__": f"The policy contract: {write} x {invalidation} x {stack}.",
                    },
                )
    return classes


globals().update(_cells())
