"""L1 memory per entry: MemoryTier (tinylfu, lru) against cachetools.TTLCache, by tracemalloc.

Each structure is built and filled with the same ``ENTRIES`` keys and small
dict values, created beforehand, so that what tracemalloc counts is the
structure's own cost of holding an entry (dict slots, per-entry records,
expiry times, the eviction policy's bookkeeping, the frequency sketch), not
the keys and values, which any cache shares with its caller. Every
structure holds a TTL, as an L1 does. Each is measured twice: filled to its
size, and after twice as many keys went through it (full, evicting, with
W-TinyLFU's ghost lists of rejected and evicted keys full too). Bar
(DESIGN.md section 6): at most 1.5x TTLCache's bytes per entry, in both.

Run alone with ``python -m benchmarks.bench_memory``; ``run(ctx)`` gives the
rows to ``benchmarks/run.py``.
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
from collections.abc import Callable
from typing import Any

import cachetools

from tiercache.tiers.memory import MemoryTier

from ._harness import Context, Row

__all__ = ["main", "run"]

ENTRIES = 100_000
BAR = 1.5
TTL = 300.0


def _data(n: int) -> tuple[list[str], list[dict[str, Any]]]:
    """Namespaced tier keys and small dict values, as an application caches them."""
    keys = [f"myapp:users:{i}" for i in range(n)]
    values = [{"id": i, "name": f"user {i}", "active": True} for i in range(n)]
    return keys, values


Fill = Callable[[list[str], list[dict[str, Any]], int], object]


def _fill_tier(admission: str) -> Fill:
    def fill(keys: list[str], values: list[dict[str, Any]], size: int) -> object:
        tier = MemoryTier(maxsize=size, ttl=TTL, admission=admission)  # type: ignore[arg-type]
        set_one = tier.set_one
        for key, value in zip(keys, values, strict=True):
            set_one(key, value, TTL, 64, 0.0)
        assert len(tier) == size, "the tier must be full"
        return tier

    return fill


def _fill_ttlcache(keys: list[str], values: list[dict[str, Any]], size: int) -> object:
    cache: cachetools.TTLCache[str, Any] = cachetools.TTLCache(maxsize=size, ttl=TTL)
    for key, value in zip(keys, values, strict=True):
        cache[key] = value
    assert len(cache) == size, "the cache must be full"
    return cache


def bytes_per_entry(fill: Fill, n: int, passes: int = 1) -> float:
    """Bytes tracemalloc sees allocated (and still held) by ``fill`` per entry it holds,
    ``passes * n`` distinct keys having gone through a structure of ``n`` entries."""
    keys, values = _data(passes * n)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        held = fill(keys, values, n)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del held
    return (after - before) / n


def measure(n: int = ENTRIES, passes: int = 1) -> dict[str, float]:
    """Bytes per entry of each structure, TTLCache first."""
    return {
        "TTLCache": bytes_per_entry(_fill_ttlcache, n, passes),
        "tinylfu": bytes_per_entry(_fill_tier("tinylfu"), n, passes),
        "lru": bytes_per_entry(_fill_tier("lru"), n, passes),
    }


def rows(sizes: dict[str, float], n: int, passes: int = 1) -> list[Row]:
    base = sizes["TTLCache"]
    out = []
    state = "filled" if passes == 1 else f"after {passes * n:,} keys"
    for admission in ("tinylfu", "lru"):
        ratio = sizes[admission] / base
        out.append(Row(
            name=f"l1_memory_per_entry_{admission}" + ("" if passes == 1 else "_churned"),
            ours=round(ratio, 2),
            baseline=None,
            ratio=None,
            bar=BAR,
            passed=ratio <= BAR,
            notes=(f"MemoryTier({admission}) {sizes[admission]:.0f} B/entry vs "
                   f"cachetools.TTLCache {base:.0f} B/entry; {n:,} entries of small dict "
                   f"values, {state} (keys and values excluded, tracemalloc)"),
            ours_label="x TTLCache bytes per entry",
        ))
    return out


def run(ctx: Context) -> list[Row]:
    n = ENTRIES // 10 if ctx.quick else ENTRIES
    return rows(measure(n), n) + rows(measure(n, passes=2), n, passes=2)


def main() -> int:
    failed = False
    for passes in (1, 2):
        sizes = measure(passes=passes)
        for name, size in sizes.items():
            print(f"{name:>9}: {size:7.1f} B/entry ({passes * ENTRIES:,} keys through)")
        for row in rows(sizes, ENTRIES, passes):
            print(f"{row.name}: {row.ours:.2f}x (bar {row.bar:g}x) {row.verdict}")
            failed = failed or row.passed is False
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
