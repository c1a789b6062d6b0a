"""Where tiercache's own time goes on the read paths, with Redis taken out.

``python -m benchmarks.breakdown`` swaps each RedisTier's client for a stub
that answers instantly with the bytes the real server returned, so what is
left is tiercache's CPU cost, free of the loopback's latency modes. Each
path is timed next to its pieces (interleaved rounds, GC off) and the
differences say what each layer of the read path costs:

- serializer: ``MsgpackSerializer.loads`` against a bare ``msgpack.unpackb``;
- tier: ``RedisTier.get_many`` against the client call it wraps;
- namespace: ``ns.get`` / ``ns.get_many`` against the tier call it drives;
- L1 miss: the same read with an L1 in front that misses and is backfilled.

Diagnostics only: no bars, nothing written. Needs the Redis server only to
create the values it then serves from the stub.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from typing import Any

import cachetools
import msgpack

import tiercache as tc

from ._harness import Context, interleave, make_loop, seed
from .run import DEFAULT_REDIS

__all__ = ["main"]

VALUE = {"name": "Ada", "n": list(range(10))}


class _StubClient:
    """Answers GET/MGET from a dict at once; anything else goes to the real client."""

    def __init__(self, real: Any, data: dict[str, bytes]) -> None:
        self._real = real
        self._data = data

    def get(self, key: str) -> bytes | None:
        return self._data.get(key)

    def mget(self, keys: list[str], *more: str) -> list[bytes | None]:
        get = self._data.get
        return [get(k) for k in keys]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _stub(tier: Any, keys: list[str]) -> None:
    real = tier.client
    data = {k: real.get(k) for k in keys}
    assert all(v is not None for v in data.values()), "values must be in Redis first"
    tier.client = _StubClient(real, data)


def _restore(*tiers: Any) -> None:
    for tier in tiers:
        if isinstance(tier.client, _StubClient):
            tier.client = tier.client._real


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.breakdown")
    parser.add_argument("--redis", default=DEFAULT_REDIS, metavar="URL")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    ctx = Context(redis_url=args.redis, quick=False, redis_ok=True)
    raw_client = ctx.raw_client()
    raw_client.ping()

    l2 = tc.RedisTier(ctx.redis_url)
    only_l2 = tc.Cache(tiers=[l2], prefix=ctx.prefix)
    l1_miss_l2 = tc.RedisTier(ctx.redis_url)
    tiny = tc.MemoryTier(maxsize=1, ttl=300)
    with_l1 = tc.Cache(tiers=[tiny, l1_miss_l2], prefix=ctx.prefix)
    l1_big_l2 = tc.RedisTier(ctx.redis_url)
    hot_l1 = tc.Cache(tiers=[tc.MemoryTier(maxsize=10_000, ttl=300), l1_big_l2], prefix=ctx.prefix)
    try:
        ns = only_l2.namespace("bd")
        ns1 = with_l1.namespace("bd")
        nsh = hot_l1.namespace("bdh")
        batch = [f"user:{i}" for i in range(100)]
        seed(ns, l2, dict.fromkeys(batch, VALUE))
        seed(nsh, l1_big_l2, {"user:1": VALUE, 1: VALUE})
        assert len(nsh.get_many(["user:1", 1])) == 2  # L2 hits backfill L1
        tier_keys = [ns.tier_key(k) for k in batch]
        _stub(l2, tier_keys)
        _stub(l1_miss_l2, tier_keys)
        blob = l2.client.get(tier_keys[0])
        payload = blob[9:]  # after RedisTier's 9-byte envelope
        raw = msgpack.packb(VALUE)
        raws = dict.fromkeys(batch, raw)
        serializer = ns.serializer
        spare = tc.MemoryTier(maxsize=1, ttl=300)  # a tier of our own to time the L1 pieces on

        def l1_miss(lookup: Any = spare.lookup) -> None:
            try:
                lookup("absent")
            except KeyError:
                pass

        ttl_cache: Any = cachetools.TTLCache(maxsize=10_000, ttl=300)
        ttl_cache["user:1"] = ttl_cache[1] = VALUE

        env = {
            "unpackb": msgpack.unpackb, "loads": serializer.loads, "raw": raw,
            "payload": payload, "rget": raws.get, "k": "user:1", "tk": tier_keys[1],
            "tier_get_many": l2.get_many, "get": ns.get, "get1": ns1.get, "getm": ns.get_many,
            "gethot": nsh.get, "tc": ttl_cache, "batch": batch, "tks": tier_keys,
            "next": next, "rot": itertools.cycle(batch[:8]), "payloads": [payload] * 100,
            "raws100": [raw] * 100, "rmget": lambda ks: [raw for _ in ks], "zip": zip,
            "l1_miss": l1_miss, "l1_set": spare.set_many,
            "entries": itertools.cycle([[(tk, VALUE, 300.0, 30)] for tk in tier_keys[:8]]),
        }
        sections = [
            ("single key from L2 (network stubbed)", 2_000, {
                "baseline: unpackb(client.get(k))": "unpackb(rget(k))",
                "msgpack.unpackb(raw)": "unpackb(raw)",
                "MsgpackSerializer.loads(payload)": "loads(payload)",
                "RedisTier.get_many([k], now)": "tier_get_many([tk], 0.0)",
                "ns.get(k), tiers=[RedisTier]": "get(k)",
                "ns.get(k), L1 miss -> L2, backfill": "get1(next(rot))",
                "MemoryTier miss (lookup raises KeyError)": "l1_miss()",
                "MemoryTier.set_many(1 entry), evicting 1": "l1_set(next(entries), 0.0)",
            }),
            ("L1 hit", 20_000, {
                "TTLCache[k]": "tc[k]",
                "ns.get(str key), L1 hit": "gethot(k)",
                "ns.get(int key), L1 hit": "gethot(1)",
            }),
            ("100 keys from L2 (network stubbed)", 100, {
                "baseline: {k: unpackb(v) for mget}":
                    "{q: unpackb(v) for q, v in zip(batch, rmget(batch)) if v is not None}",
                "100 x msgpack.unpackb(raw)": "[unpackb(r) for r in raws100]",
                "100 x MsgpackSerializer.loads": "[loads(p) for p in payloads]",
                "RedisTier.get_many(100 keys)": "tier_get_many(tks, 0.0)",
                "ns.get_many(100 keys)": "getm(batch)",
            }),
        ]
        for title, calls, stmts in sections:
            loops = {name: make_loop(stmt, env) for name, stmt in stmts.items()}
            result = interleave(loops, calls=calls, rounds=args.rounds)
            print(f"\n{title}: per call, min / median over {args.rounds} rounds")
            for name, samples in result.items():
                print(f"  {name:42} {min(samples):10.0f} ns {statistics.median(samples):10.0f} ns")
        return 0
    finally:
        _restore(l2, l1_miss_l2)
        for cache in (only_l2, with_l1, hot_l1):
            cache.close()
        ctx.cleanup()
        raw_client.close()


if __name__ == "__main__":
    sys.exit(main())
