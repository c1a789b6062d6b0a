"""AsyncCache against the real Redis: the namespace API as coroutines, lifecycle, a loop that never
stalls."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import tiercache as tc
from tiercache.testing.scheduler import ManualScheduler

MAX_GAP = 0.05
"""Seconds the event loop may go without running a 10 ms ticker."""


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    """Run one test's coroutine on a fresh loop, bounded."""

    async def bounded() -> Any:
        return await asyncio.wait_for(main(), 30)

    return asyncio.run(bounded())


def make_cache(redis_url: str, prefix: str, **options: Any) -> tc.AsyncCache:
    """L1 + the real Redis under the test's prefix."""
    options.setdefault("store", tc.MappingStore())
    return tc.AsyncCache(
        tiers=[tc.MemoryTier(), tc.RedisTier(redis_url, timeout=1.0)], prefix=prefix, **options
    )


def test_get_set_get_many_delete(redis_url: str, prefix: str) -> None:
    """set/get/get_many/delete are coroutines with Cache's semantics (None a value, MISSING for
    absent)."""
    data: dict[Any, Any] = {"stored": "from-store"}

    async def main() -> None:
        cache = make_cache(redis_url, prefix, store=tc.MappingStore(data))
        try:
            ns = cache.namespace("items")
            assert await ns.set("a", {"n": 1}) is None
            await ns.set(2, None)
            assert await ns.get("a") == {"n": 1}
            assert await ns.get(2, default=tc.MISSING) is None
            assert await ns.get("absent") is None
            assert await ns.get("absent", default=tc.MISSING) is tc.MISSING
            assert await ns.get("stored") == "from-store"
            await ns.set_many({"b": [1, 2], "c": "x"})
            assert await ns.get_many(["a", 2, "b", "c", "absent"]) == {
                "a": {"n": 1}, 2: None, "b": [1, 2], "c": "x",
            }
            await ns.delete("a")
            assert await ns.get("a", default=tc.MISSING) is tc.MISSING
            assert "a" not in data
        finally:
            await cache.close()

    run(main)
    assert data["b"] == [1, 2]


def test_invalidate_and_invalidate_all_drop_cached_copies_only(
    redis_url: str, prefix: str, redis_client: Any
) -> None:
    """invalidate drops L1 and the real Redis copy of one key; invalidate_all the namespace's; the
    store keeps them."""
    data: dict[Any, Any] = {"a": 1, "b": 2}

    async def main() -> None:
        async with make_cache(redis_url, prefix, store=tc.MappingStore(data)) as cache:
            ns = cache.namespace("items")
            l1 = cache.tiers[0]
            assert await ns.get("a") == 1 and await ns.get("b") == 2
            ka, kb = ns.tier_key("a"), ns.tier_key("b")
            assert redis_client.exists(ka) and redis_client.exists(kb)
            await ns.invalidate("a")
            assert not redis_client.exists(ka)
            assert redis_client.exists(kb)
            with pytest.raises(KeyError):
                l1.lookup(ka)
            assert l1.lookup(kb)[0] == 2
            data["a"] = 10
            assert await ns.get("a") == 10
            await ns.invalidate_all()
            assert not redis_client.exists(ka) and not redis_client.exists(kb)
            assert len(l1) == 0
            assert data == {"a": 10, "b": 2}

    run(main)


def test_flush_close_and_async_with(redis_url: str, prefix: str) -> None:
    """flush() drains write-back; close() is awaitable and idempotent; async with closes."""
    data: dict[Any, Any] = {}

    async def main() -> None:
        cache = make_cache(redis_url, prefix, store=tc.MappingStore(data),
                           scheduler=ManualScheduler())
        ns = cache.namespace("orders", write=tc.WriteBack())
        await ns.set("o1", "pending")
        assert data == {}
        assert await ns.get("o1") == "pending"
        flushed = cache.flush()
        assert asyncio.iscoroutine(flushed)
        await flushed
        assert data == {"o1": "pending"}
        await ns.set("o2", "late")
        await cache.close()
        assert data == {"o1": "pending", "o2": "late"}, "close() did not flush"
        await cache.close()
        with pytest.raises(tc.ConfigurationError):
            cache.namespace("other")

        async with make_cache(redis_url, prefix, store=tc.MappingStore(data)) as second:
            assert await second.namespace("orders").get("o2") == "late"
        with pytest.raises(tc.ConfigurationError):
            second.namespace("other")

    run(main)


def test_get_many_with_a_coroutine_loader(redis_url: str, prefix: str) -> None:
    """await ns.get_many(keys, loader=async_fn): one call with just the missing keys; the answer is
    cached."""
    calls: list[list[Any]] = []

    async def loader(keys: list[Any]) -> dict[Any, Any]:
        calls.append(list(keys))
        await asyncio.sleep(0.01)
        return {k: k * 2 for k in keys}

    async def main() -> None:
        async with make_cache(redis_url, prefix) as cache:
            ns = cache.namespace("bulk")
            await ns.set(1, "set")
            assert await ns.get_many([1, 2, 3], loader=loader) == {1: "set", 2: 4, 3: 6}
            assert await ns.get_many([2, 3], loader=loader) == {2: 4, 3: 6}
            assert calls == [[2, 3]]

    run(main)


def test_stats_is_a_plain_method(redis_url: str, prefix: str) -> None:
    """cache.stats() and ns.stats() return dicts, not coroutines, and count the awaited reads."""

    async def main() -> None:
        async with make_cache(redis_url, prefix) as cache:
            ns = cache.namespace("items")
            await ns.set("a", 1)
            await ns.get("a")
            stats = cache.stats()
            assert isinstance(stats, dict)
            assert isinstance(ns.stats(), dict)
            tiers = stats["namespaces"]["items"]["tiers"]
            l1 = next(v for k, v in tiers.items() if k.startswith("L1"))
            assert l1["hits"] >= 1

    run(main)


def test_l1_hit_does_not_touch_redis(redis_url: str, prefix: str) -> None:
    """An L1 hit of AsyncNamespace.get returns without a Redis command (str and int keys)."""
    redis_calls: list[str] = []

    async def main() -> None:
        async with make_cache(redis_url, prefix) as cache:
            l2 = cache.tiers[1]
            for method in ("get_many", "aget_many", "lease_many", "alease_many"):
                inner = getattr(l2, method)

                def counted(*args: Any, _inner: Any = inner, _name: str = method) -> Any:
                    redis_calls.append(_name)
                    return _inner(*args)

                setattr(l2, method, counted)
            ns = cache.namespace("items")
            await ns.set("a", 1)
            await ns.set(7, 2)
            assert await ns.get("a") == 1 and await ns.get(7) == 2  # L1 filled by the writes
            before = list(redis_calls)
            for _ in range(100):
                assert await ns.get("a") == 1
                assert await ns.get(7) == 2
            assert redis_calls == before, f"L1 hits reached Redis: {redis_calls[len(before):][:5]}"
            await ns.get("not-cached")
            assert len(redis_calls) > len(before), "the instrumentation sees a miss's Redis read"

    run(main)


async def _max_gap_while(work: Awaitable[Any]) -> tuple[Any, float, int]:
    """Run ``work`` beside a 10 ms ticker: its result, the longest gap between ticks, the tick
    count."""
    ticks: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        ticks.append(time.monotonic())
        for _ in range(10_000):  # bounded; ends when the work does
            if done.is_set():
                return
            await asyncio.sleep(0.01)
            ticks.append(time.monotonic())

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)  # the ticker has started
    try:
        result = await work
    finally:
        done.set()
        await task
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    return result, max(gaps, default=0.0), len(ticks)


def test_slow_function_store_does_not_block_the_loop() -> None:
    """A FunctionStore load that sleeps 0.3 s runs off the loop: a 10 ms ticker keeps ticking."""

    def slow_load(key: Any) -> Any:
        time.sleep(0.3)
        return f"loaded-{key}"

    async def main() -> None:
        async with tc.AsyncCache(
            tiers=[tc.MemoryTier()], store=tc.FunctionStore(load=slow_load)
        ) as cache:
            ns = cache.namespace("slow")
            value, gap, ticks = await _max_gap_while(ns.get("k"))
            assert value == "loaded-k"
            assert ticks >= 10, ticks
            assert gap < MAX_GAP, f"the loop stalled for {gap * 1000:.0f} ms"

    run(main)


def test_sqlite_store_waiting_on_a_lock_does_not_block_the_loop(tmp_path: Path) -> None:
    """A SQLiteStore write waiting 0.3 s for another connection's lock leaves the loop running."""
    path = tmp_path / "app.db"

    async def main() -> None:
        async with tc.AsyncCache(tiers=[tc.MemoryTier()], store=tc.SQLiteStore(path)) as cache:
            ns = cache.namespace("users")
            await ns.set("1", {"name": "Ada"})  # creates the table
            other = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            other.execute("BEGIN EXCLUSIVE")
            release = threading.Timer(0.3, lambda: other.execute("ROLLBACK"))
            release.start()
            try:
                started = time.monotonic()
                _, gap, _ticks = await _max_gap_while(ns.set("2", {"name": "Grace"}))
                waited = time.monotonic() - started
            finally:
                release.join(5)
                other.close()
            assert waited >= 0.2, f"the write did not wait for the lock ({waited:.3f} s)"
            assert gap < MAX_GAP, f"the loop stalled for {gap * 1000:.0f} ms"
            await ns.invalidate("2")
            assert await ns.get("2") == {"name": "Grace"}

    run(main)


def test_async_cache_serves_successive_event_loops(redis_url: str, prefix: str) -> None:
    """One AsyncCache used from two asyncio.run() calls (as per-test loops do) keeps working."""
    cache = make_cache(redis_url, prefix)
    ns = cache.namespace("items")

    async def first() -> None:
        await ns.set("a", 1)
        await ns.invalidate("a")
        assert await ns.get("a") == 1

    async def second() -> None:
        await ns.invalidate("a")
        assert await ns.get("a") == 1
        await ns.set("b", 2)
        await cache.close()

    try:
        run(first)
        run(second)
        errors = sum(t["errors"] for t in ns.stats()["tiers"].values())
        assert errors == 0, ns.stats()["tiers"]
    finally:
        with contextlib.suppress(Exception):  # already closed, or closing on a third loop fails too
            run(cache.close)


_EXIT_PROGRAM = """
import asyncio, sys
import tiercache as tc
from tiercache.testing.scheduler import ManualScheduler

cache = tc.AsyncCache(tiers=[tc.MemoryTier()], store=tc.SQLiteStore(sys.argv[1]),
                      scheduler=ManualScheduler())
orders = cache.namespace("orders", write=tc.WriteBack())
asyncio.run(orders.set("o1", "pending"))
# no close(): the cache's exit hook must drain the write-back buffer
"""


def test_write_back_is_drained_at_interpreter_exit(tmp_path: Path) -> None:
    """An AsyncCache left open flushes its write-back buffer when the interpreter exits."""
    db = tmp_path / "exit.db"
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", _EXIT_PROGRAM, str(db)],
                          capture_output=True, text=True, timeout=60, env=env, check=False)
    assert done.returncode == 0, done.stderr
    store = tc.SQLiteStore(db)
    try:
        assert store.bind("orders").load_many(["o1"]) == {"o1": "pending"}, done.stderr
    finally:
        store.close()
