"""tiercache beside the caches people would use instead, side by side on one Redis.

Four tables, each one round-robin over every member (the order rotates from
round to round; GC off for each alike), so that every ratio compares numbers
taken under the same load:

1. L1 hits: ``ns.get`` served by the ``MemoryTier`` against
   ``cachetools.TTLCache``, ``functools.lru_cache``, dogpile.cache's memory
   backend ``region.get``; and, awaited in one event loop, ``AsyncNamespace.get``
   against cashews ``mem://`` and aiocache ``SimpleMemoryCache``.
2. L2 hits: ``ns.get`` of an L2-only namespace against raw redis-py ``GET`` +
   ``msgpack.unpackb``, dogpile.cache's redis backend, and redis-py's
   client-side cache (``protocol=3, cache_config=CacheConfig()``: served from
   the process once cached, kept coherent by ``CLIENT TRACKING``); awaited:
   ``AsyncNamespace.get`` against ``redis.asyncio`` GET + unpackb, cashews
   ``redis://`` and aiocache ``RedisCache``.
3. Batches of 100 keys from L2: ``ns.get_many`` against MGET + 100 decodes,
   dogpile ``get_multi``; awaited: cashews ``get_many``, aiocache ``multi_get``.
4. Decorated calls (hits): ``@cache.cached`` against ``cachetools.cached``,
   ``functools.lru_cache``, dogpile ``cache_on_arguments``; awaited:
   ``@acache.cached`` against cashews ``@cache`` and aiocache ``@cached``.

All rows are context (no bar): DESIGN.md section 6's bars on these paths are
checked, pairwise, by ``bench_l1``, ``bench_l2``, ``bench_get_many`` and
``bench_decorators``; each row here names its bar row when there is one.

redis-py refuses its client-side cache on servers older than 7.4; the server
here may be 7.0, which has the ``CLIENT TRACKING`` it needs, so the benchmark
lowers ``redis.connection.CacheProxyConnection.MIN_ALLOWED_VERSION`` in this
process only (nothing is changed on disk), and checks that the timed reads
really were served from the local cache.

Values: ``{"name": "Ada", "n": list(range(10))}`` everywhere; each peer uses
its own default serializer unless it takes msgpack (noted per row). Every key
lives under the run's unique prefix and is removed afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import cachetools
import msgpack

import tiercache as tc

from ._harness import Comparison, Context, Row, interleave_n, make_loop, seed, timed_row
from ._timing import ainterleave, make_async_loop

__all__ = ["run"]

VALUE = {"name": "Ada", "n": list(range(10))}
TTL = 300
MAXSIZE = 10_000
ENTRIES = 1_000
BATCH = 100
UNROLL = 10
OURS = "tiercache"


def run(ctx: Context) -> list[Row]:
    rows = _l1_sync(ctx)
    rows += asyncio.run(_l1_async(ctx))
    if ctx.redis_ok:
        rows += _l2_sync(ctx)
        rows += asyncio.run(_l2_async(ctx))
    else:
        rows.append(Row("peers_l2", None, None, None, None, None,
                        f"SKIP: no Redis at {ctx.redis_url} ({ctx.redis_error})"))
    rows += _decorated_sync(ctx)
    rows += asyncio.run(_decorated_async(ctx))
    return rows


def _rows(section: str, results: dict[str, list[float]], labels: dict[str, str],
          notes: dict[str, str], common: str = "") -> list[Row]:
    """One row per peer: tiercache (the first entry) against it, same rounds."""
    names = list(results)
    ours = names[0]
    out = []
    for peer in names[1:]:
        comparison = Comparison(results[ours], results[peer])
        note = "; ".join(x for x in ("context, no bar", notes.get(peer, ""), common) if x)
        out.append(timed_row(f"peers_{section}_vs_{peer}", comparison, bar=None,
                             ours_label=labels[ours], baseline_label=labels[peer], notes=note))
    return out


def _redis_kwargs(ctx: Context) -> dict[str, Any]:
    import redis

    pool = redis.ConnectionPool.from_url(ctx.redis_url)
    kw = pool.connection_kwargs
    pool.disconnect()
    return {"host": kw.get("host", "127.0.0.1"), "port": int(kw.get("port", 6379)),
            "db": int(kw.get("db", 0))}


# -- 1. L1 hits ------------------------------------------------------------------------


def _l1_sync(ctx: Context) -> list[Row]:
    from dogpile.cache import make_region

    tier = tc.RedisTier(ctx.redis_url) if ctx.redis_ok else tc.RedisTier.embedded()
    cache = tc.Cache(tiers=[tc.MemoryTier(maxsize=MAXSIZE, ttl=TTL), tier], prefix=ctx.prefix)
    try:
        ns = cache.namespace("peers.l1")
        keys = [f"user:{i}" for i in range(ENTRIES)]
        seed(ns, tier, dict.fromkeys(keys, VALUE))
        assert len(ns.get_many(keys)) == ENTRIES  # L2 hits backfill L1
        ttl_cache: Any = cachetools.TTLCache(maxsize=MAXSIZE, ttl=TTL)
        region = make_region().configure("dogpile.cache.memory", expiration_time=TTL)

        @functools.lru_cache(maxsize=MAXSIZE)
        def lru(key: str) -> Any:
            return VALUE

        for k in keys:
            ttl_cache[k] = VALUE
            region.set(k, VALUE)
            lru(k)
        key = keys[ENTRIES // 2]
        assert ns.get(key) == ttl_cache[key] == region.get(key) == lru(key) == VALUE

        loops = {
            OURS: make_loop("get(key)", {"get": ns.get, "key": key}, UNROLL),
            "ttlcache": make_loop("c[key]", {"c": ttl_cache, "key": key}, UNROLL),
            "lru_cache": make_loop("f(key)", {"f": lru, "key": key}, UNROLL),
            "dogpile_memory": make_loop("get(key)", {"get": region.get, "key": key}, UNROLL),
        }
        fast = ctx.scale(5_000, 500)
        calls = {OURS: fast, "ttlcache": fast, "lru_cache": fast,
                 "dogpile_memory": ctx.scale(300, 50)}
        l1 = ns.tier_stats[0]
        before = (l1.hits, l1.misses)
        results = interleave_n(loops, calls=calls, rounds=ctx.scale(11, 3), per_loop=UNROLL)
        served = l1.hits - before[0]
        expected = fast * (ctx.scale(11, 3) + 1) * UNROLL
        check = (f"L1 served {served}/{expected} tiercache calls"
                 + ("" if served == expected and l1.misses == before[1] else ": NOT pure L1"))
        labels = {OURS: "ns.get (L1 hit)", "ttlcache": "cachetools.TTLCache[key]",
                  "lru_cache": "functools.lru_cache f(key)",
                  "dogpile_memory": "dogpile memory region.get(key)"}
        notes = {"ttlcache": "bar row: l1_hit_str (<= 1.5x)"}
        return _rows("l1", results, labels, notes, check)
    finally:
        cache.close()


async def _l1_async(ctx: Context) -> list[Row]:
    from aiocache import SimpleMemoryCache
    from cashews import Cache as CashewsCache

    tier = tc.RedisTier(ctx.redis_url) if ctx.redis_ok else tc.RedisTier.embedded()
    acache = tc.AsyncCache(tiers=[tc.MemoryTier(maxsize=MAXSIZE, ttl=TTL), tier],
                           prefix=ctx.prefix)
    cashews = CashewsCache()
    cashews.setup("mem://")
    aio = SimpleMemoryCache()
    try:
        ns = acache.namespace("peers.l1a")
        keys = [f"user:{i}" for i in range(ENTRIES)]
        seed(ns, tier, dict.fromkeys(keys, VALUE))
        assert len(await ns.get_many(keys)) == ENTRIES
        for k in keys:
            await cashews.set(k, VALUE, expire=TTL)
            await aio.set(k, VALUE, ttl=TTL)
        key = keys[ENTRIES // 2]
        assert await ns.get(key) == await cashews.get(key) == await aio.get(key) == VALUE
        loops = {
            OURS: make_async_loop("await get(key)", {"get": ns.get, "key": key}, UNROLL),
            "cashews_mem": make_async_loop("await get(key)", {"get": cashews.get, "key": key},
                                           UNROLL),
            "aiocache_memory": make_async_loop("await get(key)", {"get": aio.get, "key": key},
                                               UNROLL),
        }
        calls = {OURS: ctx.scale(2_000, 200), "cashews_mem": ctx.scale(200, 30),
                 "aiocache_memory": ctx.scale(200, 30)}
        results = await ainterleave(loops, calls=calls, rounds=ctx.scale(11, 3), per_loop=UNROLL)
        labels = {OURS: "await AsyncNamespace.get (L1 hit)",
                  "cashews_mem": "await cashews mem:// get",
                  "aiocache_memory": "await aiocache SimpleMemoryCache.get"}
        return _rows("l1_async", results, labels, {}, "awaited in one running event loop")
    finally:
        await cashews.close()
        await aio.close()
        await acache.close()


# -- 2. L2 hits ------------------------------------------------------------------------


class _CSCCount:
    """Client-side cache hits and misses seen while :func:`_csc_counting` is active."""

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0


@contextlib.contextmanager
def _csc_counting() -> Iterator[_CSCCount]:
    """Count redis-py's client-side cache hits (through its own metrics hook) meanwhile."""
    import redis.connection as rc

    original = rc.record_csc_request
    count = _CSCCount()

    def counting(*args: Any, **kwargs: Any) -> Any:
        result = kwargs.get("result", args[0] if args else None)
        if getattr(result, "name", str(result)).upper().endswith("HIT"):
            count.hits += 1
        else:
            count.misses += 1
        return original(*args, **kwargs)

    rc.record_csc_request = counting
    try:
        yield count
    finally:
        rc.record_csc_request = original


def _csc_client(ctx: Context) -> tuple[Any, str]:
    """redis-py with its client-side cache, the server version check lowered here only."""
    import redis
    import redis.connection as rc
    from redis.cache import CacheConfig

    proxy = rc.CacheProxyConnection
    note = ""
    if proxy.MIN_ALLOWED_VERSION != "7.0.0":
        note = (f"redis-py's CacheProxyConnection.MIN_ALLOWED_VERSION lowered from "
                f"{proxy.MIN_ALLOWED_VERSION} to 7.0.0 in this process")
        proxy.MIN_ALLOWED_VERSION = "7.0.0"
    client = redis.Redis.from_url(ctx.redis_url, protocol=3, cache_config=CacheConfig(),
                                  socket_timeout=1.0)
    return client, note


def _l2_sync(ctx: Context) -> list[Row]:
    from dogpile.cache import make_region

    tier = tc.RedisTier(ctx.redis_url)
    cache = tc.Cache(tiers=[tier], prefix=ctx.prefix)
    raw = ctx.raw_client()
    csc, csc_note = _csc_client(ctx)
    region = make_region(key_mangler=lambda k: f"{ctx.prefix}:dogpile:{k}").configure(
        "dogpile.cache.redis",
        expiration_time=TTL,
        arguments={**_redis_kwargs(ctx), "redis_expiration_time": TTL + 60,
                   "distributed_lock": False},
    )
    try:
        ns = cache.namespace("peers.l2")
        key = "user:1"
        seed(ns, tier, {key: VALUE})
        rkey = f"{ctx.prefix}:raw:peers:1"
        raw.set(rkey, msgpack.packb(VALUE))
        ckey = f"{ctx.prefix}:raw:peers:csc"
        raw.set(ckey, msgpack.packb(VALUE))
        region.set(key, VALUE)
        assert ns.get(key) == msgpack.unpackb(raw.get(rkey)) == region.get(key) == VALUE
        assert msgpack.unpackb(csc.get(ckey)) == VALUE
        with _csc_counting() as counted:
            for _ in range(50):
                msgpack.unpackb(csc.get(ckey))
        csc_ok = counted.hits == 50 and counted.misses == 0

        unpackb = msgpack.unpackb
        loops = {
            OURS: make_loop("get(key)", {"get": ns.get, "key": key}),
            "redis_py_get": make_loop("unpackb(cget(k))", {"unpackb": unpackb, "cget": raw.get,
                                                             "k": rkey}),
            "dogpile_redis": make_loop("get(key)", {"get": region.get, "key": key}),
            "redis_py_client_side_cache": make_loop(
                "unpackb(cget(k))", {"unpackb": unpackb, "cget": csc.get, "k": ckey}),
        }
        n = ctx.scale(150, 30)
        calls = dict.fromkeys(loops, n)
        stats = ns.tier_stats[0]
        before = stats.hits
        with _csc_counting() as timed_csc:
            results = interleave_n(loops, calls=calls, rounds=ctx.scale(11, 3))
        served = stats.hits - before
        expected = n * (ctx.scale(11, 3) + 1)
        check = (f"tiers=[RedisTier]; L2 served {served}/{expected} tiercache calls"
                 + ("" if served == expected else ": NOT pure L2"))
        csc_total = timed_csc.hits + timed_csc.misses
        labels = {OURS: "ns.get, L2 only", "redis_py_get": "redis-py GET + msgpack.unpackb",
                  "dogpile_redis": "dogpile redis backend region.get",
                  "redis_py_client_side_cache": "redis-py client-side cache GET + unpackb"}
        notes = {
            "redis_py_get": "bar row: l2_hit_l2_only (<= 1.10x)",
            "dogpile_redis": "dogpile pickles values; distributed_lock=False",
            "redis_py_client_side_cache": (
                f"{csc_note}; served locally in the timed rounds: {timed_csc.hits}/{csc_total}"
                f" (validation pass {counted.hits}/50)"
                + ("" if csc_ok and timed_csc.hits == csc_total
                   else ": NOT all local hits")),
        }
        return _rows("l2", results, labels, notes, check) + _batches_sync(ctx, ns, tier, raw,
                                                                          region)
    finally:
        cache.close()
        raw.close()
        csc.close()


def _batches_sync(ctx: Context, ns: tc.Namespace, tier: tc.RedisTier, raw: Any,
                  region: Any) -> list[Row]:
    keys = [f"user:{i}" for i in range(BATCH)]
    seed(ns, tier, dict.fromkeys(keys, VALUE))
    rkeys = [f"{ctx.prefix}:raw:peersmany:{i}" for i in range(BATCH)]
    raw.mset({k: msgpack.packb(VALUE) for k in rkeys})
    region.set_multi(dict.fromkeys(keys, VALUE))
    unpackb = msgpack.unpackb

    def hand_written() -> dict[str, Any]:
        return {k: unpackb(v) for k, v in zip(keys, raw.mget(rkeys), strict=False) if v is not None}

    def dogpile_many() -> list[Any]:
        return region.get_multi(keys)  # type: ignore[no-any-return]

    assert ns.get_many(keys) == hand_written() == dict(zip(keys, dogpile_many(), strict=True))
    loops = {
        OURS: make_loop("gm(keys)", {"gm": ns.get_many, "keys": keys}),
        "mget_decode": make_loop("f()", {"f": hand_written}),
        "dogpile_get_multi": make_loop("f()", {"f": dogpile_many}),
    }
    n = ctx.scale(30, 8)
    results = interleave_n(loops, calls=dict.fromkeys(loops, n), rounds=ctx.scale(11, 3))
    labels = {OURS: "ns.get_many(100), L2 only", "mget_decode": "MGET(100) + 100 unpackb",
              "dogpile_get_multi": "dogpile redis get_multi(100)"}
    notes = {"mget_decode": "bar row: get_many_100 (<= 1.3x)",
             "dogpile_get_multi": "dogpile: MGET + 100 unpickles, a list"}
    return _rows("batch100", results, labels, notes, "tiers=[RedisTier]")


async def _l2_async(ctx: Context) -> list[Row]:
    import redis.asyncio as aredis
    from aiocache import RedisCache
    from aiocache.serializers import MsgPackSerializer
    from cashews import Cache as CashewsCache

    tier = tc.RedisTier(ctx.redis_url)
    acache = tc.AsyncCache(tiers=[tier], prefix=ctx.prefix)
    araw = aredis.Redis.from_url(ctx.redis_url)
    cashews = CashewsCache()
    cashews.setup(ctx.redis_url, client_side=False)
    kw = _redis_kwargs(ctx)

    class BytesMsgPack(MsgPackSerializer):  # type: ignore[misc]
        """aiocache 0.12's MsgPackSerializer has RedisCache utf-8-decode the bytes first
        (and fail); with ``encoding=None`` they arrive as bytes, decoded here to str keys."""

        def loads(self, value: Any) -> Any:
            return None if value is None else msgpack.unpackb(value, use_list=self.use_list)

    aio = RedisCache(endpoint=kw["host"], port=kw["port"], db=kw["db"],
                     namespace=f"{ctx.prefix}:aiocache", serializer=BytesMsgPack(encoding=None))
    try:
        ns = acache.namespace("peers.l2a")
        key = "user:1"
        seed(ns, tier, {key: VALUE})
        rkey = f"{ctx.prefix}:raw:peersa:1"
        await araw.set(rkey, msgpack.packb(VALUE))
        ckey = f"{ctx.prefix}:cashews:user:1"
        await cashews.set(ckey, VALUE, expire=TTL)
        await aio.set(key, VALUE, ttl=TTL)
        got = (await ns.get(key), msgpack.unpackb(await araw.get(rkey)), await cashews.get(ckey),
               await aio.get(key))
        assert all(g == VALUE for g in got), got

        loops = {
            OURS: make_async_loop("await get(key)", {"get": ns.get, "key": key}),
            "redis_asyncio_get": make_async_loop("unpackb(await cget(k))",
                                                 {"unpackb": msgpack.unpackb, "cget": araw.get,
                                                  "k": rkey}),
            "cashews_redis": make_async_loop("await get(k)", {"get": cashews.get, "k": ckey}),
            "aiocache_redis": make_async_loop("await get(key)", {"get": aio.get, "key": key}),
        }
        n = ctx.scale(100, 20)
        stats = ns.tier_stats[0]
        before = stats.hits
        results = await ainterleave(loops, calls=n, rounds=ctx.scale(11, 3))
        served = stats.hits - before
        expected = n * (ctx.scale(11, 3) + 1)
        check = (f"tiers=[RedisTier]; L2 served {served}/{expected} tiercache calls; awaited "
                 "in one running event loop" + ("" if served == expected else ": NOT pure L2"))
        labels = {OURS: "await AsyncNamespace.get, L2 only",
                  "redis_asyncio_get": "redis.asyncio GET + unpackb",
                  "cashews_redis": "await cashews redis:// get",
                  "aiocache_redis": "await aiocache RedisCache.get"}
        notes = {
            "cashews_redis": "cashews pickles values",
            "aiocache_redis": "msgpack serializer (its MsgPackSerializer, encoding=None)",
        }
        rows = _rows("l2_async", results, labels, notes, check)

        # Batches, awaited.
        keys = [f"user:{i}" for i in range(BATCH)]
        seed(ns, tier, dict.fromkeys(keys, VALUE))
        ckeys = [f"{ctx.prefix}:cashews:many:{i}" for i in range(BATCH)]
        await cashews.set_many(dict.fromkeys(ckeys, VALUE), expire=TTL)
        await aio.multi_set([(k, VALUE) for k in keys], ttl=TTL)
        assert len(await ns.get_many(keys)) == BATCH
        assert list(await cashews.get_many(*ckeys)) == [VALUE] * BATCH
        assert list(await aio.multi_get(keys)) == [VALUE] * BATCH
        loops = {
            OURS: make_async_loop("await gm(keys)", {"gm": ns.get_many, "keys": keys}),
            "cashews_get_many": make_async_loop("await gm(*keys)", {"gm": cashews.get_many,
                                                                    "keys": ckeys}),
            "aiocache_multi_get": make_async_loop("await gm(keys)", {"gm": aio.multi_get,
                                                                     "keys": keys}),
        }
        results = await ainterleave(loops, calls=ctx.scale(30, 8), rounds=ctx.scale(11, 3))
        labels = {OURS: "await AsyncNamespace.get_many(100), L2 only",
                  "cashews_get_many": "await cashews redis:// get_many(100)",
                  "aiocache_multi_get": "await aiocache RedisCache.multi_get(100)"}
        rows += _rows("batch100_async", results, labels,
                      {"cashews_get_many": "cashews: MGET + 100 unpickles, a tuple",
                       "aiocache_multi_get": "aiocache: MGET + 100 msgpack decodes, a list"},
                      "tiers=[RedisTier]; awaited in one running event loop")
        return rows
    finally:
        await cashews.close()
        await aio.close()
        await araw.aclose()
        await acache.close()


# -- 4. decorated calls ----------------------------------------------------------------


def _decorated_sync(ctx: Context) -> list[Row]:
    from dogpile.cache import make_region

    tier = tc.RedisTier(ctx.redis_url) if ctx.redis_ok else tc.RedisTier.embedded()
    cache = tc.Cache(tiers=[tc.MemoryTier(maxsize=MAXSIZE, ttl=TTL), tier], prefix=ctx.prefix)
    try:
        fns: dict[str, Callable[[Any], Any]] = {}

        @cache.cached("peers.deco", ttl=TTL)
        def ours(uid: Any) -> Any:
            return VALUE

        @cachetools.cached(cachetools.LRUCache(MAXSIZE), lock=threading.Lock())
        def ct(uid: Any) -> Any:
            return VALUE

        @functools.lru_cache(maxsize=MAXSIZE)
        def lru(uid: Any) -> Any:
            return VALUE

        region = make_region().configure("dogpile.cache.memory", expiration_time=TTL)

        @region.cache_on_arguments()
        def dp(uid: Any) -> Any:
            return VALUE

        fns = {OURS: ours, "cachetools_cached_lock": ct, "lru_cache": lru,
               "dogpile_cache_on_arguments": dp}
        args = [f"user:{i}" for i in range(ENTRIES)]
        arg = args[ENTRIES // 2]
        fillers = [a for a in args if a != arg]
        for name, fn in fns.items():
            for a in fillers:
                if name != OURS:
                    fn(a)
            fn(arg)
        # tiercache's resident arguments straight into L1 (a miss costs Redis round trips)
        deco_ns = ours.namespace  # type: ignore[attr-defined]
        seed(deco_ns, deco_ns.tiers[0], dict.fromkeys(fillers, VALUE))
        loops = {name: make_loop("f(a)", {"f": fn, "a": arg}, UNROLL) for name, fn in fns.items()}
        fast = ctx.scale(5_000, 500)
        calls = dict.fromkeys(loops, fast)
        calls["dogpile_cache_on_arguments"] = ctx.scale(300, 50)
        results = interleave_n(loops, calls=calls, rounds=ctx.scale(11, 3), per_loop=UNROLL)
        labels = {OURS: "@cache.cached f(str) hit", "cachetools_cached_lock":
                  "cachetools.cached(LRUCache, lock=Lock())", "lru_cache": "functools.lru_cache",
                  "dogpile_cache_on_arguments": "dogpile memory cache_on_arguments()"}
        return _rows("decorated", results, labels,
                     {"cachetools_cached_lock": "bar row: decorated_hit_str (<= 1.0x)"})
    finally:
        cache.close()


async def _decorated_async(ctx: Context) -> list[Row]:
    import aiocache
    from cashews import Cache as CashewsCache

    tier = tc.RedisTier(ctx.redis_url) if ctx.redis_ok else tc.RedisTier.embedded()
    acache = tc.AsyncCache(tiers=[tc.MemoryTier(maxsize=MAXSIZE, ttl=TTL), tier],
                           prefix=ctx.prefix)
    cashews = CashewsCache()
    cashews.setup("mem://")
    try:
        @acache.cached("peers.adeco", ttl=TTL)
        async def ours(uid: Any) -> Any:
            return VALUE

        @cashews(ttl=TTL)
        async def cw(uid: Any) -> Any:
            return VALUE

        @aiocache.cached(ttl=TTL)
        async def aio(uid: Any) -> Any:
            return VALUE

        fns = {OURS: ours, "cashews_cache": cw, "aiocache_cached": aio}
        args = [f"user:{i}" for i in range(ENTRIES)]
        arg = args[ENTRIES // 2]
        fillers = [a for a in args if a != arg]
        for name, fn in fns.items():
            for a in fillers:
                if name != OURS:
                    await fn(a)
            await fn(arg)
        deco_ns = ours.namespace  # type: ignore[attr-defined]
        seed(deco_ns, deco_ns.tiers[0], dict.fromkeys(fillers, VALUE))
        loops = {name: make_async_loop("await f(a)", {"f": fn, "a": arg}, UNROLL)
                 for name, fn in fns.items()}
        calls = {OURS: ctx.scale(2_000, 200), "cashews_cache": ctx.scale(150, 30),
                 "aiocache_cached": ctx.scale(150, 30)}
        results = await ainterleave(loops, calls=calls, rounds=ctx.scale(11, 3), per_loop=UNROLL)
        labels = {OURS: "await @acache.cached f(str) hit",
                  "cashews_cache": "await cashews @cache(ttl) mem://",
                  "aiocache_cached": "await aiocache @cached SimpleMemoryCache"}
        return _rows("decorated_async", results, labels,
                     {"cashews_cache": "bar row: async_decorated_hit (<= 0.1x)"},
                     "awaited in one running event loop")
    finally:
        await cashews.close()
        await acache.close()
