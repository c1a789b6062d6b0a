"""``ns.get_many(100 keys)`` from L2, against one raw MGET and 100 decodes.

Bars (DESIGN.md section 6): one round trip (a single MGET, no GET per key),
and at most 1.3x a hand-written ``{k: unpackb(v) for k, v in zip(keys,
client.mget(keys)) if v is not None}`` on the same server, with a client
configured like RedisTier's. The cache is L2-only, so every key is read from
Redis.

The round-trip check counts the commands the tier's own client sends (and
pipelines it runs), so other clients of a shared server cannot blur it; the
server's ``INFO commandstats`` delta is reported alongside as a cross-check.
"""

from __future__ import annotations

from typing import Any

import msgpack

import tiercache as tc

from ._harness import Context, Row, compare, count_commands, make_loop, seed, timed_row

__all__ = ["run"]

VALUE = {"name": "Ada", "n": list(range(10))}
BATCH = 100


def run(ctx: Context) -> list[Row]:
    names = ["get_many_100", "get_many_one_round_trip"]
    if not ctx.redis_ok:
        return [Row(n, None, None, None, 1.3 if n == names[0] else None, None,
                    f"SKIP: no Redis at {ctx.redis_url} ({ctx.redis_error})") for n in names]
    raw = ctx.raw_client()
    try:
        return [_timing(ctx, raw), _round_trips(ctx, raw)]
    finally:
        raw.close()


def _timing(ctx: Context, raw: Any) -> Row:
    tier = tc.RedisTier(ctx.redis_url)
    cache = tc.Cache(tiers=[tier], prefix=ctx.prefix)
    try:
        ns = cache.namespace("many")
        keys = [f"user:{i}" for i in range(BATCH)]
        seed(ns, tier, dict.fromkeys(keys, VALUE))
        rkeys = [f"{ctx.prefix}:raw:many:{i}" for i in range(BATCH)]
        blob = msgpack.packb(VALUE)
        raw.mset(dict.fromkeys(rkeys, blob))

        def hand_written() -> dict[str, Any]:
            pairs = zip(keys, raw.mget(rkeys), strict=False)
            return {k: msgpack.unpackb(v) for k, v in pairs if v is not None}

        got = ns.get_many(keys)
        assert got == hand_written() and len(got) == BATCH, "both sides must find every key"

        rounds, calls = ctx.scale(31, 5), ctx.scale(40, 10)
        ours = make_loop("get_many(keys)", {"get_many": ns.get_many, "keys": keys})
        base = make_loop(
            "{k: unpackb(v) for k, v in zip(keys, mget(rkeys)) if v is not None}",
            {"unpackb": msgpack.unpackb, "mget": raw.mget, "keys": keys, "rkeys": rkeys,
             "zip": zip},
        )
        stats = ns.tier_stats[0]
        before = stats.hits
        result = compare(ours, base, calls=calls, rounds=rounds)
        served = stats.hits - before
        expected = BATCH * calls * (rounds + 1)
        valid = served == expected
        return timed_row(
            "get_many_100", result, bar=1.3, valid=valid,
            ours_label="ns.get_many(100 keys), L2 only",
            baseline_label="mget(100) + 100 unpackb -> dict",
            notes=f"tiers=[RedisTier]; L2 served {served}/{expected} keys",
        )
    finally:
        cache.close()


def _round_trips(ctx: Context, raw: Any) -> Row:
    tier = tc.RedisTier(ctx.redis_url)
    cache = tc.Cache(tiers=[tier], prefix=ctx.prefix)
    try:
        ns = cache.namespace("manyrt")
        keys = [f"user:{i}" for i in range(BATCH)]
        seed(ns, tier, dict.fromkeys(keys, VALUE))
        calls = 20
        sent: list[str] = []
        count_commands(tier, sent)
        server_before = _commandstats(raw)
        for _ in range(calls):
            found = ns.get_many(keys)
            assert len(found) == BATCH
        server_after = _commandstats(raw)
        ok = sent == ["MGET"] * calls
        summary = ", ".join(f"{c} x{sent.count(c)}" for c in sorted(set(sent))) or "none"
        mget_delta = server_after.get("mget", 0) - server_before.get("mget", 0)
        get_delta = server_after.get("get", 0) - server_before.get("get", 0)
        return Row(
            "get_many_one_round_trip", len(sent) / calls, None, None, None, ok,
            f"{calls} get_many(100) sent: {summary} (expected MGET x{calls}); "
            f"server commandstats delta (shared server, others may add): "
            f"mget +{mget_delta}, get +{get_delta}",
            ours_label="round trips per get_many(100)", baseline_label="",
        )
    finally:
        cache.close()


def _commandstats(client: Any) -> dict[str, int]:
    """``{command: calls}`` from the server's INFO commandstats."""
    info = client.info("commandstats")
    out = {}
    for name, stat in info.items():
        if name.startswith("cmdstat_") and isinstance(stat, dict):
            out[name[len("cmdstat_"):]] = int(stat.get("calls", 0))
    return out
