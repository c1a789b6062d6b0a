"""L1 hits: ``ns.get(key)`` served by the MemoryTier, against in-process peers.

Bar (DESIGN.md section 6): an L1 hit costs at most 1.5x a
``cachetools.TTLCache`` hit of the same size and TTL. ``functools.lru_cache``
and a plain dict are shown for context (no bar: they have no TTL, no
namespace, no stats). The cache has the real shape of a deployment, L1 over
a Redis tier (the real server when it answers, else the embedded one), so
the invalidation bus runs in the background as it would in production.
"""

from __future__ import annotations

import functools
from typing import Any

import cachetools

import tiercache as tc

from ._harness import Context, Row, compare, make_loop, seed, timed_row

__all__ = ["run"]

MAXSIZE = 10_000
TTL = 300.0
ENTRIES = 1_000  # keys resident in each cache: realistic dict sizes, not a 1-key toy
VALUE = {"name": "Ada", "n": list(range(10))}
UNROLL = 10


def run(ctx: Context) -> list[Row]:
    redis_tier = tc.RedisTier(ctx.redis_url) if ctx.redis_ok else tc.RedisTier.embedded()
    where = "real Redis" if ctx.redis_ok else "embedded Redis (no server answered)"
    cache = tc.Cache(
        tiers=[tc.MemoryTier(maxsize=MAXSIZE, ttl=TTL), redis_tier], prefix=ctx.prefix
    )
    try:
        return _run(ctx, cache, redis_tier, where)
    finally:
        cache.close()


def _run(ctx: Context, cache: tc.Cache, redis_tier: tc.RedisTier, where: str) -> list[Row]:
    ns = cache.namespace("l1")
    str_keys = [f"user:{i}" for i in range(ENTRIES)]
    int_keys = list(range(ENTRIES))
    # Into L2, then read once: the L2 hits backfill L1, as in production.
    seed(ns, redis_tier, dict.fromkeys([*str_keys, *int_keys], VALUE))
    warmed = ns.get_many([*str_keys, *int_keys])
    assert len(warmed) == 2 * ENTRIES, "every key must be readable before timing"

    ttl_cache: Any = cachetools.TTLCache(maxsize=MAXSIZE, ttl=TTL)
    plain: dict[Any, Any] = {}
    for k in [*str_keys, *int_keys]:
        ttl_cache[k] = VALUE
        plain[k] = VALUE

    @functools.lru_cache(maxsize=MAXSIZE)
    def lru(key: Any) -> Any:
        return VALUE

    for k in str_keys:
        lru(k)

    skey = str_keys[ENTRIES // 2]
    ikey = int_keys[ENTRIES // 2]
    rounds = ctx.scale(15, 5)
    calls = ctx.scale(10_000, 1_000)  # x UNROLL per round and side
    int_calls = ctx.scale(2_000, 200)  # the int path is slower; keep the round short

    ours_str = make_loop("get(key)", {"get": ns.get, "key": skey}, UNROLL)
    ours_int = make_loop("get(key)", {"get": ns.get, "key": ikey}, UNROLL)

    rows = []
    cases = [
        ("l1_hit_str", ours_str, "ns.get(str key)",
         make_loop("c[key]", {"c": ttl_cache, "key": skey}, UNROLL),
         "TTLCache[key]", 1.5, calls, ""),
        ("l1_hit_str_vs_lru_cache", ours_str, "ns.get(str key)",
         make_loop("f(key)", {"f": lru, "key": skey}, UNROLL),
         "lru_cache f(key)", None, calls, "context, no bar"),
        ("l1_hit_str_vs_dict", ours_str, "ns.get(str key)",
         make_loop("d[key]", {"d": plain, "key": skey}, UNROLL),
         "dict[key]", None, calls, "context, no bar"),
        ("l1_hit_int", ours_int, "ns.get(int key)",
         make_loop("c[key]", {"c": ttl_cache, "key": ikey}, UNROLL),
         "TTLCache[key]", 1.5, int_calls, "DESIGN bar applies to every key type"),
    ]
    for name, ours, ours_label, base, base_label, bar, n, note in cases:
        key = skey if ours is ours_str else ikey
        ns.get(key)  # make sure it sits in L1 (a bus gap may have dropped it)
        before = _counts(ns)
        result = compare(ours, base, calls=n, rounds=rounds, per_loop=UNROLL)
        after = _counts(ns)
        expected = (n + rounds * n) * UNROLL  # warm-up + timed rounds
        l1_hits = after[0] - before[0]
        below = after[1] - before[1]
        valid = l1_hits == expected and below == 0
        check = f"L1 served {l1_hits}/{expected} calls" + (
            "" if valid else f", {below} reached L2 or below: NOT a pure L1 measurement"
        )
        notes = "; ".join(x for x in (note, check, f"L2 = {where}") if x)
        rows.append(timed_row(name, result, bar=bar, ours_label=ours_label,
                              baseline_label=base_label, notes=notes, valid=valid))
    return rows


def _counts(ns: tc.Namespace) -> tuple[int, int]:
    """(L1 hits, requests that went past L1)."""
    l1 = ns.tier_stats[0]
    return l1.hits, l1.misses
