"""L2 hits: ``ns.get(key)`` served by Redis, against raw redis-py + msgpack.

Bar (DESIGN.md section 6): at most 1.10x ``msgpack.unpackb(client.get(key))``
on the same server, with a client configured like RedisTier's (0.1 s
timeouts, no retries). Two shapes of the cache:

- ``l2_hit_l2_only``: ``tiers=[RedisTier]``, no L1 at all;
- ``l2_hit_l1_miss``: ``tiers=[MemoryTier(maxsize=1), RedisTier]`` read over
  a rotating set of keys, so every read misses L1, hits L2 and backfills L1
  (the real cost of an L1 miss, the invalidation bus running alongside).

Both sides read the same value from the same server; the baseline rotates
over the same number of keys.

RedisTier sends its reads on connections it keeps (``tiercache/redis/direct.py``),
skipping redis-py's per-command pool checkout, retry wrapper and
observability hooks, which the baseline's ``client.get`` pays. So a context
row, ``l2_hit_l1_miss_vs_kept_connection``, also sets the L1-miss read
against the floor of a Python client: GET sent and read on one kept redis-py
``Connection``, then ``unpackb``.
"""

from __future__ import annotations

from typing import Any

import msgpack

import tiercache as tc

from ._harness import Context, Row, compare, count_commands, cycle, make_loop, seed, timed_row

__all__ = ["run"]

VALUE = {"name": "Ada", "n": list(range(10))}
ROTATE = 8  # keys read in turn by the L1-miss variant (L1 holds one)


def run(ctx: Context) -> list[Row]:
    names = ["l2_hit_l2_only", "l2_hit_l1_miss", "l2_hit_l1_miss_vs_kept_connection",
             "l2_get_one_command"]
    if not ctx.redis_ok:
        return [Row(n, None, None, None, 1.10 if n in names[:2] else None, None,
                    f"SKIP: no Redis at {ctx.redis_url} ({ctx.redis_error})") for n in names]
    raw = ctx.raw_client()
    try:
        return [
            _l2_only(ctx, raw),
            _l1_miss(ctx, raw),
            _l1_miss(ctx, raw, kept=True),
            _one_command(ctx),
        ]
    finally:
        raw.close()


def _raw_keys(ctx: Context, raw: Any, tag: str, count: int) -> list[str]:
    keys = [f"{ctx.prefix}:raw:{tag}:{i}" for i in range(count)]
    blob = msgpack.packb(VALUE)
    raw.mset(dict.fromkeys(keys, blob))
    return keys


def _sizes(ctx: Context) -> tuple[int, int]:
    """(rounds, calls per round and side) for a Redis read of ~50-150 us."""
    return ctx.scale(41, 7), ctx.scale(200, 40)


def _l2_only(ctx: Context, raw: Any) -> Row:
    tier = tc.RedisTier(ctx.redis_url)
    cache = tc.Cache(tiers=[tier], prefix=ctx.prefix)
    try:
        ns = cache.namespace("l2only")
        key = "user:1"
        seed(ns, tier, {key: VALUE})
        (rkey,) = _raw_keys(ctx, raw, "l2only", 1)
        assert ns.get(key) == msgpack.unpackb(raw.get(rkey)) == VALUE
        rounds, calls = _sizes(ctx)
        ours = make_loop("get(key)", {"get": ns.get, "key": key})
        base = make_loop("unpackb(cget(rkey))",
                         {"unpackb": msgpack.unpackb, "cget": raw.get, "rkey": rkey})
        stats = ns.tier_stats[0]
        before = stats.hits
        result = compare(ours, base, calls=calls, rounds=rounds)
        served = stats.hits - before
        expected = calls * (rounds + 1)
        valid = served == expected
        notes = f"tiers=[RedisTier]; L2 served {served}/{expected} calls"
        return timed_row("l2_hit_l2_only", result, bar=1.10, valid=valid,
                         ours_label="ns.get(key), L2 only",
                         baseline_label="unpackb(client.get(key))", notes=notes)
    finally:
        cache.close()


def _l1_miss(ctx: Context, raw: Any, kept: bool = False) -> Row:
    """The bar row; with ``kept``, a context row against GET on one kept connection."""
    tier = tc.RedisTier(ctx.redis_url)
    pool = raw.connection_pool
    conn = pool.connection_class(**pool.connection_kwargs)

    def kept_get(key: str) -> Any:
        conn.send_packed_command(conn.pack_command("GET", key), check_health=False)
        return conn.read_response()

    cache = tc.Cache(tiers=[tc.MemoryTier(maxsize=1, ttl=300), tier], prefix=ctx.prefix)
    try:
        ns = cache.namespace("l1miss")
        keys = [f"user:{i}" for i in range(ROTATE)]
        seed(ns, tier, dict.fromkeys(keys, VALUE))
        assert ns.get_many(keys) == dict.fromkeys(keys, VALUE)
        rkeys = _raw_keys(ctx, raw, "l1miss", ROTATE)
        rounds, calls = _sizes(ctx)
        ours = make_loop("get(next(keys))", {"get": ns.get, "next": next, "keys": cycle(keys)})
        base = make_loop("unpackb(cget(next(rkeys)))",
                         {"unpackb": msgpack.unpackb, "cget": kept_get if kept else raw.get,
                          "next": next, "rkeys": cycle(rkeys)})
        l1, l2 = ns.tier_stats
        before = (l1.hits, l1.misses, l2.hits)
        result = compare(ours, base, calls=calls, rounds=rounds)
        hits1, miss1, hits2 = (l1.hits - before[0], l1.misses - before[1], l2.hits - before[2])
        expected = calls * (rounds + 1)
        valid = hits1 == 0 and miss1 == expected and hits2 == expected
        notes = (f"tiers=[MemoryTier(maxsize=1), RedisTier], {ROTATE} keys in rotation; "
                 f"L1 missed {miss1}/{expected}, L2 served {hits2}/{expected}"
                 + ("" if valid else f", L1 hit {hits1}: NOT a pure L1-miss measurement"))
        if kept:
            return timed_row("l2_hit_l1_miss_vs_kept_connection", result, bar=None,
                             ours_label="ns.get(key), L1 miss -> L2",
                             baseline_label="unpackb(GET on a kept Connection)",
                             notes=f"context, no bar: the floor of a Python client; {notes}")
        return timed_row("l2_hit_l1_miss", result, bar=1.10, valid=valid,
                         ours_label="ns.get(key), L1 miss -> L2",
                         baseline_label="unpackb(client.get(key))", notes=notes)
    finally:
        conn.disconnect()
        cache.close()


def _one_command(ctx: Context) -> Row:
    """An L2 read sends exactly one GET (counted on the tier's client and its direct reads)."""
    tier = tc.RedisTier(ctx.redis_url)
    cache = tc.Cache(tiers=[tier], prefix=ctx.prefix)
    try:
        ns = cache.namespace("l2cmd")
        seed(ns, tier, {"user:1": VALUE})
        sent: list[str] = []
        count_commands(tier, sent)
        reads = 20
        got = [ns.get("user:1") for _ in range(reads)]
        ok = sent == ["GET"] * reads and got == [VALUE] * reads
        summary = ", ".join(f"{c} x{sent.count(c)}" for c in sorted(set(sent))) or "none"
        return Row("l2_get_one_command", float(len(sent)) / reads, None, None, None, ok,
                   f"{reads} ns.get from L2 sent: {summary} (expected GET x{reads})",
                   ours_label="commands per ns.get", baseline_label="")
    finally:
        cache.close()

