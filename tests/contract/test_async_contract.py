"""AsyncCache passes the same policy contract as Cache: every write policy x strategy x stack.

The contract is written against the sync API, so each cell drives an
AsyncCache through a thin facade that runs every coroutine on one event
loop in a thread of its own (the loop the async Redis clients are bound to).
The plans underneath are the ones Cache runs; only the driver differs.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from test_policy_contract import INVALIDATIONS, STACKS, WRITES  # tests/contract is on sys.path

from tiercache import AsyncCache, Cache, MemoryTier, RedisTier, Tier
from tiercache.testing.swap_contract import SwapContract


class _Loop:
    """An event loop running in a daemon thread; ``call`` runs a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, value: Any) -> Any:
        if inspect.isawaitable(value):
            return asyncio.run_coroutine_threadsafe(value, self.loop).result(timeout=60)  # type: ignore[arg-type]
        return value

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class _SyncFacade:
    """An AsyncNamespace seen through the sync API: methods run on the loop and wait."""

    def __init__(self, ns: Any, loop: _Loop) -> None:
        self._ns = ns
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._ns, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            # Created on the loop's thread: the async clients belong to that loop.
            async def run() -> Any:
                result = attr(*args, **kwargs)
                return await result if inspect.isawaitable(result) else result

            return self._loop.call(run())

        return call


class _AsyncCell(SwapContract):
    write_name = ""
    invalidation_name = ""
    stack = "L1"
    url = ""

    @pytest.fixture
    def event_loop_thread(self) -> Iterator[None]:
        """The loop every coroutine of the test runs on; closed after the caches are."""
        self.loop = _Loop()
        yield
        self.loop.close()

    @pytest.fixture
    def cache_prefix(self, redis_url: str, prefix: str, event_loop_thread: None) -> str:
        self.url = redis_url
        return prefix

    def make_write(self) -> Any:
        return WRITES[self.write_name]()

    def make_invalidation(self) -> Any:
        return INVALIDATIONS[self.invalidation_name]()

    def make_tiers(self, l1_maxsize: int) -> list[Tier]:
        if self.stack == "L1":
            return [MemoryTier(maxsize=l1_maxsize)]
        l2 = RedisTier(self.url, timeout=1.0)
        return [l2] if self.stack == "L2" else [MemoryTier(maxsize=l1_maxsize), l2]

    cache_class = AsyncCache

    def wrap_namespace(self, ns: Any) -> Any:
        assert type(ns).__name__ == "AsyncNamespace"
        return _SyncFacade(ns, self.loop)

    def close_cache(self, cache: Cache) -> None:
        self.loop.call(cache.close())


def _cells() -> dict[str, type[Any]]:
    classes: dict[str, type[Any]] = {}
    for write in WRITES:
        for invalidation in INVALIDATIONS:
            for stack in STACKS:
                name = f"TestAsync{write}{invalidation}{stack}"
                classes[name] = type(
                    name,
                    (_AsyncCell,),
                    {
                        "write_name": write,
                        "invalidation_name": invalidation,
                        "stack": stack,
                        "__doc__": (
                            f"AsyncCache, the policy contract: {write} x {invalidation} x {stack}."
                        ),
                    },
                )
    return classes


globals().update(_cells())
