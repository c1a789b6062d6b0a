"""Decorated calls: a ``@cache.cached`` hit served by L1, against the peers' decorators.

Bars (DESIGN.md section 6, issue 4):

- sync: a hit costs at most 1.0x ``cachetools.cached(LRUCache(10_000),
  lock=Lock())`` (the thread-safe form, as tiercache is), for str and int
  arguments; ``functools.lru_cache``, ``cachetools.cachedmethod`` and
  dogpile.cache's ``region.cache_on_arguments()`` on its memory backend are
  shown for context;
- async: an awaited hit costs at most 0.1x cashews' ``@cache(ttl=...)`` on
  ``mem://``, timed inside one running event loop (``AsyncCache`` and a plain
  ``Cache`` decorating an ``async def``); aiocache's ``@cached`` on its memory
  cache for context.

tiercache's cache has the shape of a deployment: ``MemoryTier`` over a Redis
tier (the real server when it answers), so the invalidation bus runs in the
background. Every timed row checks that L1 served every call (the namespace's
L1 hit counter) and that the function never ran during timing.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from typing import Any

import cachetools

import tiercache as tc

from ._harness import Comparison, Context, Row, compare, make_loop, seed, timed_row
from ._timing import acompare, make_async_loop

__all__ = ["run"]

MAXSIZE = 10_000
TTL = 300
ENTRIES = 1_000  # arguments resident in every cache: realistic dict sizes
VALUE = {"name": "Ada", "n": list(range(10))}
UNROLL = 10
SYNC_BAR = 1.0
ASYNC_BAR = 0.1


def _redis_tier(ctx: Context) -> tuple[tc.RedisTier, str]:
    if ctx.redis_ok:
        return tc.RedisTier(ctx.redis_url), "real Redis"
    return tc.RedisTier.embedded(), "embedded Redis (no server answered)"


def run(ctx: Context) -> list[Row]:
    rows = _sync_rows(ctx)
    rows.extend(asyncio.run(_async_rows(ctx)))
    return rows


# -- sync ------------------------------------------------------------------------------


class _Calls:
    """Counts the decorated functions' real runs (a hit must not run them)."""

    def __init__(self) -> None:
        self.n = 0


def _sync_rows(ctx: Context) -> list[Row]:
    from dogpile.cache import make_region

    redis_tier, where = _redis_tier(ctx)
    cache = tc.Cache(tiers=[tc.MemoryTier(maxsize=MAXSIZE, ttl=TTL), redis_tier],
                     prefix=ctx.prefix)
    try:
        runs = _Calls()

        @cache.cached("deco.sync", ttl=TTL)
        def ours(uid: Any) -> Any:
            runs.n += 1
            return VALUE

        class Repo:
            def __init__(self) -> None:
                self.lru: Any = cachetools.LRUCache(MAXSIZE)
                self.lock = threading.Lock()

            @cache.cached("deco.method", ttl=TTL)
            def user(self, uid: Any) -> Any:
                runs.n += 1
                return VALUE

            @cachetools.cachedmethod(lambda self: self.lru, lock=lambda self: self.lock)
            def ct_user(self, uid: Any) -> Any:
                runs.n += 1
                return VALUE

        @cachetools.cached(cachetools.LRUCache(MAXSIZE), lock=threading.Lock())
        def ct(uid: Any) -> Any:
            runs.n += 1
            return VALUE

        @functools.lru_cache(maxsize=MAXSIZE)
        def lru(uid: Any) -> Any:
            runs.n += 1
            return VALUE

        region = make_region().configure("dogpile.cache.memory", expiration_time=TTL)

        @region.cache_on_arguments()
        def dp(uid: Any) -> Any:
            runs.n += 1
            return VALUE

        repo = Repo()
        str_args = [f"user:{i}" for i in range(ENTRIES)]
        int_args = list(range(ENTRIES))
        sarg, iarg = str_args[ENTRIES // 2], int_args[ENTRIES // 2]
        ns = ours.namespace  # type: ignore[attr-defined]
        mns = Repo.user.namespace  # type: ignore[attr-defined]  # (not on obj.user: see notes)
        # Resident arguments: the peers by calling, tiercache's L1 directly (a call
        # that misses costs Redis round trips); the timed arguments by real calls.
        fillers = [a for a in [*str_args, *int_args] if a not in (sarg, iarg)]
        for arg in fillers:
            for fn in (ct, lru, dp, repo.ct_user):
                fn(arg)
        for nsx in (ns, mns):
            seed(nsx, nsx.tiers[0], dict.fromkeys(fillers, VALUE))
        for arg in (sarg, iarg):
            for fn in (ours, ct, lru, dp, repo.user, repo.ct_user):
                fn(arg)

        rounds = ctx.scale(15, 5)
        calls = ctx.scale(10_000, 1_000)
        slow_calls = ctx.scale(500, 100)  # dogpile's hit is ~20x dearer: shorter rounds

        def loop(fn: Any, arg: Any) -> Any:
            return make_loop("f(arg)", {"f": fn, "arg": arg}, UNROLL)

        cases: list[tuple[str, Any, Any, Any, str, Any, str, float | None, int, str]] = [
            ("decorated_hit_str", ns, loop(ours, sarg), sarg,
             "@cache.cached f(str)", loop(ct, sarg), "cachetools.cached(LRUCache, lock=Lock())",
             SYNC_BAR, calls, ""),
            ("decorated_hit_int", ns, loop(ours, iarg), iarg,
             "@cache.cached f(int)", loop(ct, iarg), "cachetools.cached(LRUCache, lock=Lock())",
             SYNC_BAR, calls, "DESIGN bar applies to every argument type"),
            ("decorated_hit_vs_lru_cache", ns, loop(ours, sarg), sarg,
             "@cache.cached f(str)", loop(lru, sarg), "functools.lru_cache f(str)",
             None, calls, "context, no bar"),
            ("decorated_hit_vs_dogpile", ns, loop(ours, sarg), sarg,
             "@cache.cached f(str)", loop(dp, sarg),
             "dogpile region.cache_on_arguments(), memory backend",
             None, slow_calls, "context, no bar"),
            ("decorated_method_hit", mns, loop(repo.user, sarg), sarg,
             "@cache.cached obj.m(str)", loop(repo.ct_user, sarg),
             "cachetools.cachedmethod(lock=...) obj.m(str)",
             None, calls, "context, no bar"),
        ]
        rows = []
        for name, nsx, ours_loop, _arg, ours_label, base, base_label, bar, n, note in cases:
            before_runs = runs.n
            l1 = nsx.tier_stats[0]
            before = (l1.hits, l1.misses)
            result = compare(ours_loop, base, calls=n, rounds=rounds, per_loop=UNROLL)
            hits, misses = l1.hits - before[0], l1.misses - before[1]
            expected = (n + rounds * n) * UNROLL
            ran = runs.n - before_runs
            valid = hits == expected and misses == 0 and ran == 0
            check = f"L1 served {hits}/{expected} calls, function ran {ran}x" + (
                "" if valid else ": NOT a pure L1-hit measurement")
            notes = "; ".join(x for x in (note, check, f"L2 = {where}") if x)
            rows.append(timed_row(name, result, bar=bar, ours_label=ours_label,
                                  baseline_label=base_label, notes=notes, valid=valid))
        return rows
    finally:
        cache.close()


# -- async -----------------------------------------------------------------------------


async def _async_rows(ctx: Context) -> list[Row]:
    import aiocache
    from cashews import Cache as CashewsCache

    sync_tier, where = _redis_tier(ctx)
    acache = tc.AsyncCache(
        tiers=[tc.MemoryTier(maxsize=MAXSIZE, ttl=TTL),
               tc.RedisTier(ctx.redis_url) if ctx.redis_ok else tc.RedisTier.embedded()],
        prefix=ctx.prefix,
    )
    cache = tc.Cache(tiers=[tc.MemoryTier(maxsize=MAXSIZE, ttl=TTL), sync_tier],
                     prefix=ctx.prefix)
    cashews = CashewsCache()
    cashews.setup("mem://")
    try:
        runs = _Calls()

        @acache.cached("deco.async", ttl=TTL)
        async def ours(uid: Any) -> Any:
            runs.n += 1
            return VALUE

        @cache.cached("deco.async_on_sync_cache", ttl=TTL)
        async def ours_sync_cache(uid: Any) -> Any:
            runs.n += 1
            return VALUE

        @cashews(ttl=TTL)
        async def cw(uid: Any) -> Any:
            runs.n += 1
            return VALUE

        @aiocache.cached(ttl=TTL)
        async def aio(uid: Any) -> Any:
            runs.n += 1
            return VALUE

        args = [f"user:{i}" for i in range(ENTRIES)]
        arg = args[ENTRIES // 2]
        fillers = [a for a in args if a != arg]
        for a in fillers:
            for fn in (cw, aio):
                await fn(a)
        for nsx in (ours.namespace, ours_sync_cache.namespace):  # type: ignore[attr-defined]
            seed(nsx, nsx.tiers[0], dict.fromkeys(fillers, VALUE))
        for fn in (ours, ours_sync_cache, cw, aio):
            await fn(arg)

        rounds = ctx.scale(15, 5)
        calls = ctx.scale(200, 50)  # cashews' hit is ~40-110 µs: rounds of ~0.2 s
        per = 10

        def loop(fn: Any) -> Any:
            return make_async_loop("await f(arg)", {"f": fn, "arg": arg}, per)

        cases: list[tuple[str, Any, Any, str, Any, str, float | None, str]] = [
            ("async_decorated_hit", ours.namespace, loop(ours),  # type: ignore[attr-defined]
             "AsyncCache @cached async f(str)", loop(cw), "cashews @cache(ttl) mem://",
             ASYNC_BAR, ""),
            ("async_decorated_hit_cache", ours_sync_cache.namespace,  # type: ignore[attr-defined]
             loop(ours_sync_cache), "Cache @cached async f(str)", loop(cw),
             "cashews @cache(ttl) mem://", ASYNC_BAR, "a sync Cache decorating an async def"),
            ("async_decorated_hit_vs_aiocache", ours.namespace,  # type: ignore[attr-defined]
             loop(ours), "AsyncCache @cached async f(str)", loop(aio),
             "aiocache @cached(ttl) SimpleMemoryCache", None, "context, no bar"),
        ]
        rows = []
        for name, nsx, ours_loop, ours_label, base, base_label, bar, note in cases:
            before_runs = runs.n
            l1 = nsx.tier_stats[0]
            before = (l1.hits, l1.misses)
            result: Comparison = await acompare(ours_loop, base, calls=calls, rounds=rounds,
                                                per_loop=per)
            hits, misses = l1.hits - before[0], l1.misses - before[1]
            expected = (calls + rounds * calls) * per
            ran = runs.n - before_runs
            valid = hits == expected and misses == 0 and ran == 0
            check = f"L1 served {hits}/{expected} awaited calls, function ran {ran}x" + (
                "" if valid else ": NOT a pure L1-hit measurement")
            notes = "; ".join(x for x in (
                note, "awaited in one running event loop", check, f"L2 = {where}") if x)
            rows.append(timed_row(name, result, bar=bar, ours_label=ours_label,
                                  baseline_label=base_label, notes=notes, valid=valid))
        return rows
    finally:
        await cashews.close()
        await acache.close()
        cache.close()
