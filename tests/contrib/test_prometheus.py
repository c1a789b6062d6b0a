"""contrib.prometheus: a known workload through a real Cache, read back from the text exposition."""

from __future__ import annotations

import asyncio
import importlib
import re
import sys
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import tiercache as tc
from tiercache.contrib.prometheus import register

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(registry: CollectorRegistry) -> Samples:
    """Every sample of the text exposition, by (sample name, labels)."""
    text = generate_latest(registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def requests(samples: Samples, namespace: str) -> dict[tuple[str, str], float]:
    """``tiercache_requests_total`` of one namespace by (layer, result)."""
    out = {}
    for (name, labels), count in samples.items():
        label = dict(labels)
        if name == "tiercache_requests_total" and label["namespace"] == namespace:
            out[(label["layer"], label["result"])] = count
    return out


def test_requests_count_each_layer_exactly(cache: tc.Cache, workload: Any) -> None:
    """L1 hits, L2 hits and store loads of the workload appear exactly, by layer and result."""
    registry = CollectorRegistry()
    register(cache, registry)  # before the workload: the counts are read at scrape time
    before = scrape(registry)
    assert requests(before, "users") == {}
    workload.drive(cache)
    samples = scrape(registry)
    assert requests(samples, "users") == workload.requests
    assert requests(samples, "orders") == {
        (layer, result): 0 for layer in ("L1:memory", "L2:redis", "store")
        for result in ("hit", "miss")
    }


def test_async_cache_counts_the_same(acache: tc.AsyncCache, workload: Any) -> None:
    """An AsyncCache registers the same way and reports the same exact counts."""
    registry = CollectorRegistry()
    register(acache, registry)
    asyncio.run(workload.adrive(acache))
    samples = scrape(registry)
    assert requests(samples, "users") == workload.requests
    assert value(samples, "tiercache_write_back_flushed_total", namespace="orders") == (
        workload.write_back_sets
    )


def test_write_back_and_store_writes(cache: tc.Cache, workload: Any) -> None:
    """Write-back sets flushed to the store show as flushed entries, store sets and nothing
    pending."""
    registry = CollectorRegistry()
    register(cache, registry)
    workload.drive(cache)
    samples = scrape(registry)
    orders = {"namespace": "orders"}
    flushed = value(samples, "tiercache_write_back_flushed_total", **orders)
    assert flushed == workload.write_back_sets
    assert value(samples, "tiercache_write_back_pending", **orders) == 0
    assert value(samples, "tiercache_write_back_store_errors_total", **orders) == 0
    assert value(samples, "tiercache_write_back_dead_lettered_total", **orders) == 0
    store_sets = value(samples, "tiercache_sets_total", layer="store", **orders)
    assert store_sets == workload.write_back_sets
    # "users" has no write-back policy: no write-back series for it.
    assert value(samples, "tiercache_write_back_flushed_total", namespace="users") is None


def test_latency_is_a_summary_of_what_stats_holds(cache: tc.Cache, workload: Any) -> None:
    """Count, sum and quantiles per layer equal stats()'s, in seconds; no quantile where nothing was
    timed."""
    registry = CollectorRegistry()
    register(cache, registry)
    workload.drive(cache)
    samples = scrape(registry)
    families = {f.name: f.type for f in text_string_to_metric_families(
        generate_latest(registry).decode())}
    assert families["tiercache_layer_duration_seconds"] == "summary"
    users = cache.stats()["namespaces"]["users"]
    layers = {**users["tiers"], "store": users["store"]}
    # One store load per key the tiers missed (each get is a batch of one).
    assert layers["store"]["latency"]["count"] == workload.store_loads + 1
    for layer, counts in layers.items():
        latency = counts["latency"]
        where = {"namespace": "users", "layer": layer}
        assert value(samples, "tiercache_layer_duration_seconds_count", **where) == latency["count"]
        total = value(samples, "tiercache_layer_duration_seconds_sum", **where)
        assert total == pytest.approx((latency["mean_us"] or 0) * latency["count"] / 1e6)
        for quantile, field in (("0.5", "p50_us"), ("0.99", "p99_us")):
            got = value(samples, "tiercache_layer_duration_seconds", quantile=quantile, **where)
            # Scrape and stats() are two snapshots of the same idle cache.
            expected = None if latency[field] is None else latency[field] / 1e6
            assert got == pytest.approx(expected)
    assert value(samples, "tiercache_layer_duration_seconds_count", namespace="users",
                 layer="store") > 0


def test_tier_gauges(redis_url: str, prefix: str) -> None:
    """Entries, bytes and evictions of the L1 tier and each tier's kind come from stats()'s
    tiers."""
    l1 = tc.MemoryTier(maxsize=3, maxbytes=1_000_000, admission="lru")
    with tc.Cache(tiers=[l1, tc.RedisTier(redis_url, timeout=1.0)], prefix=prefix) as cache:
        registry = CollectorRegistry()
        register(cache, registry)
        ns = cache.namespace("n")
        for i in range(5):
            ns.set(f"k{i}", "x" * 10)
        samples = scrape(registry)
        expected_bytes = l1.currbytes
    assert value(samples, "tiercache_tier_entries", layer="L1:memory") == 3
    assert value(samples, "tiercache_tier_evictions_total", layer="L1:memory") == 2
    assert expected_bytes is not None and expected_bytes > 0
    assert value(samples, "tiercache_tier_size_bytes", layer="L1:memory") == expected_bytes
    assert value(samples, "tiercache_tier_info", layer="L1:memory", kind="MemoryTier") == 1
    assert value(samples, "tiercache_tier_info", layer="L2:redis", kind="RedisTier") == 1
    # RedisTier reports neither entries nor evictions in stats(): no series is made up.
    assert value(samples, "tiercache_tier_entries", layer="L2:redis") is None


def test_tier_errors_are_counted(prefix: str) -> None:
    """Reads of a Redis nobody answers show as L2 errors, and the reads still reach the store."""
    down = tc.RedisTier("redis://127.0.0.1:1/0", timeout=0.1)
    store = tc.MappingStore({"a": 1})
    with tc.Cache(tiers=[tc.MemoryTier(), down], store=store, prefix=prefix) as cache:
        registry = CollectorRegistry()
        register(cache, registry)
        ns = cache.namespace("n")
        for key in ("a", "b", "c"):
            ns.get(key)
        samples = scrape(registry)
        stats = cache.stats()["namespaces"]["n"]["tiers"]["L2:redis"]
    errors = value(samples, "tiercache_errors_total", namespace="n", layer="L2:redis")
    assert errors is not None and errors >= 3
    assert errors == stats["errors"]
    assert value(samples, "tiercache_requests_total", namespace="n", layer="store",
                 result="hit") == 1


def test_keys_never_become_labels(cache: tc.Cache, workload: Any) -> None:
    """Only bounded labels appear (namespace, layer, result, quantile, kind); no key is a label
    value."""
    registry = CollectorRegistry()
    register(cache, registry)
    workload.drive(cache)
    samples = scrape(registry)
    names = {name for _, labels in samples for name, _ in labels}
    values = {label_value for _, labels in samples for _, label_value in labels}
    assert names == {"namespace", "layer", "result", "quantile", "kind"}
    assert not values & set(workload.keys)
    assert all(name.startswith("tiercache_") for name, _ in samples)


def test_register_twice_on_one_registry_is_refused(cache: tc.Cache) -> None:
    """A second collector with the same names is refused at register(); unregistering frees them."""
    registry = CollectorRegistry()
    collector = register(cache, registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        register(cache, registry)
    registry.unregister(collector)
    register(cache, registry)


def test_without_prometheus_client_the_error_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Importing the module without prometheus-client fails with the pip install hint."""
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # None: "not importable"
    monkeypatch.delitem(sys.modules, "tiercache.contrib.prometheus")
    with pytest.raises(ImportError, match=re.escape("pip install 'tiercache[prometheus]'")):
        importlib.import_module("tiercache.contrib.prometheus")
