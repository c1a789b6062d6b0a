"""L1 hits with the Prometheus and OpenTelemetry exporters attached, against the same caches
without.

Bar (issue 16): ``ns.get`` served by L1 on a cache registered with
``contrib.prometheus.register`` and ``contrib.otel.instrument`` costs at most
1.05x the same call on an identical cache with neither. Both exporters read
``stats()`` when scraped or collected, so the bar checks that nothing was
added to the hit path; a scrape and a collection run (untimed) before every
round, so the exporters are live, not just attached. The time of one scrape
is reported beside it for context.

The two paths run the same code, so what tells them apart is noise and
where each cache's objects sit in memory: a cache made later measured up
to 3% slower than its twin whichever had the exporters. So there are four
caches, made plain, observed, observed, plain (ABBA), and each side of
the comparison reads from its two alternately.
"""

from __future__ import annotations

import time
from typing import Any

import tiercache as tc

from ._harness import Context, Row, compare, make_loop, seed, timed_row

__all__ = ["run"]

MAXSIZE = 10_000
TTL = 300.0
ENTRIES = 1_000
VALUE = {"name": "Ada", "n": list(range(10))}
UNROLL = 5  # x 2 caches: 10 calls per loop iteration


def run(ctx: Context) -> list[Row]:
    try:
        from prometheus_client import CollectorRegistry, generate_latest

        from tiercache.contrib.prometheus import register
    except ImportError as exc:
        return [Row("l1_hit_with_metrics", None, None, None, 1.05, None,
                    f"SKIP: {exc} (pip install 'tiercache[prometheus]')")]
    caches = [_cache(ctx, name) for name in ("plain_a", "observed_a", "observed_b", "plain_b")]
    try:
        plain = [caches[0], caches[3]]
        observed = [caches[1], caches[2]]
        # One registry per cache: a registry takes one cache's metric names once.
        registries = [CollectorRegistry() for _ in observed]
        for cache, registry in zip(observed, registries, strict=True):
            register(cache, registry)
        collect, otel_note = _otel(observed)

        def scrape() -> None:
            for registry in registries:
                generate_latest(registry)
            collect()

        def expose() -> None:
            generate_latest(registries[0])

        return _run(ctx, plain, observed, scrape, expose, otel_note)
    finally:
        for cache in caches:
            cache.close()


def _cache(ctx: Context, name: str) -> tc.Cache:
    """L1 over Redis (the real server when it answers), as bench_l1 has it."""
    redis_tier = tc.RedisTier(ctx.redis_url) if ctx.redis_ok else tc.RedisTier.embedded()
    return tc.Cache(tiers=[tc.MemoryTier(maxsize=MAXSIZE, ttl=TTL), redis_tier],
                    prefix=f"{ctx.prefix}.{name}")


def _otel(caches: list[tc.Cache]) -> tuple[Any, str]:
    """``instrument()`` of each cache on a meter provider of their own; its collect, and a note."""
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        from tiercache.contrib.otel import instrument
    except ImportError as exc:
        return (lambda: None), f"OpenTelemetry not measured: {exc}"
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    for cache in caches:
        instrument(cache, meter_provider=provider)
    return reader.get_metrics_data, "Prometheus collector and OTel instruments attached"


def _run(ctx: Context, plain: list[tc.Cache], observed: list[tc.Cache], scrape: Any,
         expose: Any, otel_note: str) -> list[Row]:
    keys = [f"user:{i}" for i in range(ENTRIES)]
    namespaces = {}
    for cache in [*plain, *observed]:
        ns = cache.namespace("l1")
        seed(ns, cache.tiers[1], dict.fromkeys(keys, VALUE))
        assert len(ns.get_many(keys)) == ENTRIES, "every key must be readable before timing"
        namespaces[id(cache)] = ns
    plain_ns = [namespaces[id(cache)] for cache in plain]
    observed_ns = [namespaces[id(cache)] for cache in observed]
    key = keys[ENTRIES // 2]
    # Many short rounds: two near-equal paths on a noisy machine are told
    # apart better when a slow spell lands on both sides of a round alike.
    rounds = ctx.scale(101, 5)
    calls = ctx.scale(2_000, 500)  # x 10 calls per iteration
    stmt = "a(key); b(key)"
    ours = make_loop(stmt, {"a": observed_ns[0].get, "b": observed_ns[1].get, "key": key}, UNROLL)
    base = make_loop(stmt, {"a": plain_ns[0].get, "b": plain_ns[1].get, "key": key}, UNROLL)
    for ns in namespaces.values():
        ns.get(key)  # sits in L1 (a bus gap may have dropped it)
    before = {name: [_counts(ns) for ns in group]
              for name, group in (("observed", observed_ns), ("plain", plain_ns))}
    result = compare(ours, base, calls=calls, rounds=rounds, per_loop=2 * UNROLL,
                     before_round=scrape)
    after = {name: [_counts(ns) for ns in group]
             for name, group in (("observed", observed_ns), ("plain", plain_ns))}
    expected = (calls + rounds * calls) * UNROLL  # per cache: warm-up + timed rounds
    served = {
        name: [a[0] - b[0] for a, b in zip(after[name], before[name], strict=True)]
        for name in after
    }
    below = sum(
        a[1] - b[1] for name in after for a, b in zip(after[name], before[name], strict=True)
    )
    valid = all(hits == expected for group in served.values() for hits in group) and below == 0
    check = (f"L1 served {sum(served['observed'])}/{2 * expected} observed and "
             f"{sum(served['plain'])}/{2 * expected} plain calls") + (
        "" if valid else ", some reached L2 or below: NOT a pure L1 measurement"
    )
    rows = [timed_row("l1_hit_with_metrics", result, bar=1.05,
                      ours_label="ns.get(str key), metrics attached",
                      baseline_label="ns.get(str key), no metrics",
                      notes=(f"{otel_note}; caches made ABBA; a scrape before each round; "
                             f"{check}"),
                      valid=valid)]
    scrapes = ctx.scale(200, 20)
    started = time.perf_counter_ns()
    for _ in range(scrapes):
        expose()
    per_scrape = round((time.perf_counter_ns() - started) / scrapes / 1_000, 1)
    rows.append(Row("metrics_scrape", per_scrape, None, None, None, None,
                    f"context, no bar: generate_latest() of 1 namespace, 2 tiers, "
                    f"{scrapes} scrapes; the hit path does not pay it",
                    ours_label="µs per Prometheus scrape"))
    return rows


def _counts(ns: tc.Namespace) -> tuple[int, int]:
    """(L1 hits, requests that went past L1)."""
    l1 = ns.tier_stats[0]
    return l1.hits, l1.misses
