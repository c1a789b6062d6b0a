"""contrib.otel: a known workload through a real Cache, read back with the SDK's
InMemoryMetricReader."""

from __future__ import annotations

import asyncio
import gc
import importlib
import re
import sys
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Gauge, InMemoryMetricReader, Sum
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import tiercache as tc
from tiercache.contrib.otel import instrument

Points = dict[str, dict[frozenset[tuple[str, Any]], float]]


def collect(reader: InMemoryMetricReader) -> tuple[Points, dict[str, Any]]:
    """One collection: each instrument's points by attributes, and each instrument's metric."""
    points: Points = {}
    metrics: dict[str, Any] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data is not None else ():
        for scope in resource.scope_metrics:
            assert scope.scope.name == "tiercache"
            for metric in scope.metrics:
                metrics[metric.name] = metric
                points[metric.name] = {
                    frozenset(point.attributes.items()): point.value
                    for point in metric.data.data_points
                }
    return points, metrics


def requests(points: Points, namespace: str) -> dict[tuple[str, str], float]:
    """``tiercache.requests`` of one namespace by (layer, result)."""
    out = {}
    for attributes, count in points.get("tiercache.requests", {}).items():
        found = dict(attributes)
        if found["tiercache.namespace"] == namespace:
            out[(found["tiercache.layer"], found["tiercache.result"])] = count
    return out


def point(points: Points, name: str, **attributes: str) -> float | None:
    wanted = frozenset((f"tiercache.{k}", v) for k, v in attributes.items())
    return points.get(name, {}).get(wanted)


@pytest.fixture
def reader() -> InMemoryMetricReader:
    """An in-memory reader on a meter provider of the test's own (never the global one)."""
    return InMemoryMetricReader()


@pytest.fixture
def meter_provider(reader: InMemoryMetricReader) -> Any:
    """A meter provider that only ``reader`` reads."""
    provider = MeterProvider(metric_readers=[reader])
    yield provider
    provider.shutdown()


def test_requests_count_each_layer_exactly(
    cache: tc.Cache, workload: Any, reader: InMemoryMetricReader, meter_provider: Any
) -> None:
    """L1 hits, L2 hits and store loads of the workload are observed exactly, by layer and
    result."""
    instrument(cache, meter_provider=meter_provider)
    workload.drive(cache)
    points, _ = collect(reader)
    assert requests(points, "users") == workload.requests
    assert point(points, "tiercache.write_back.flushed", namespace="orders") == (
        workload.write_back_sets
    )
    assert point(points, "tiercache.sets", namespace="orders", layer="store") == (
        workload.write_back_sets
    )


def test_async_cache_counts_the_same(
    acache: tc.AsyncCache, workload: Any, reader: InMemoryMetricReader, meter_provider: Any
) -> None:
    """An AsyncCache is instrumented the same way and observed with the same exact counts."""
    instrument(acache, meter_provider=meter_provider)
    asyncio.run(workload.adrive(acache))
    points, _ = collect(reader)
    assert requests(points, "users") == workload.requests


def test_each_collection_takes_a_fresh_snapshot(
    cache: tc.Cache, workload: Any, reader: InMemoryMetricReader, meter_provider: Any
) -> None:
    """Work between two collections shows in the second, in every instrument, not one collection
    late."""
    instrument(cache, meter_provider=meter_provider)
    workload.drive(cache)
    first, _ = collect(reader)
    users = cache.namespace("users")
    for _ in range(5):
        users.get("cold:0")
    users.get("fresh")  # absent everywhere: one more miss at each layer
    second, _ = collect(reader)
    assert point(second, "tiercache.requests", namespace="users", layer="L1:memory",
                 result="hit") == workload.l1_hits + 5
    assert point(second, "tiercache.requests", namespace="users", layer="store",
                 result="miss") == 2
    stats = cache.stats()["namespaces"]["users"]
    for name, key in (("tiercache.layer.operations", "count"),):
        for layer, counts in {**stats["tiers"], "store": stats["store"]}.items():
            assert point(second, name, namespace="users", layer=layer) == counts["latency"][key]
    assert point(first, "tiercache.layer.operations", namespace="users", layer="store") == (
        workload.store_loads + 1
    )
    assert point(second, "tiercache.layer.operations", namespace="users", layer="store") == (
        workload.store_loads + 2
    )


def test_instruments_kinds_and_units(
    cache: tc.Cache, workload: Any, reader: InMemoryMetricReader, meter_provider: Any
) -> None:
    """Counters are monotonic sums, levels non-monotonic sums, quantiles gauges; units are UCUM."""
    instrument(cache, meter_provider=meter_provider)
    workload.drive(cache)
    points, metrics = collect(reader)
    expected = {
        "tiercache.requests": ("{request}", True),
        "tiercache.errors": ("{error}", True),
        "tiercache.layer.operation.time": ("s", True),
        "tiercache.write_back.pending": ("{entry}", False),
        "tiercache.tier.entries": ("{entry}", False),
        "tiercache.tier.evictions": ("{entry}", True),
    }
    for name, (unit, monotonic) in expected.items():
        assert metrics[name].unit == unit, name
        assert isinstance(metrics[name].data, Sum), name
        assert metrics[name].data.is_monotonic is monotonic, name
    duration = metrics["tiercache.layer.operation.duration"]
    assert duration.unit == "s"
    assert isinstance(duration.data, Gauge)
    stats = cache.stats()["namespaces"]["users"]["store"]["latency"]
    assert point(points, "tiercache.layer.operation.duration", namespace="users", layer="store",
                 quantile="0.99") == pytest.approx(stats["p99_us"] / 1e6)
    assert point(points, "tiercache.tier.entries", layer="L1:memory") == len(cache.tiers[0])


def test_no_key_is_an_attribute(
    cache: tc.Cache, workload: Any, reader: InMemoryMetricReader, meter_provider: Any
) -> None:
    """Attributes are the bounded tiercache.* ones; no key of the workload is an attribute value."""
    instrument(cache, meter_provider=meter_provider)
    workload.drive(cache)
    points, _ = collect(reader)
    names = {name for series in points.values() for attrs in series for name, _ in attrs}
    values = {value for series in points.values() for attrs in series for _, value in attrs}
    assert names == {"tiercache.namespace", "tiercache.layer", "tiercache.result",
                     "tiercache.quantile", "tiercache.tier.kind"}
    assert not values & set(workload.keys)


def test_span_hook_makes_one_span_per_operation() -> None:
    """The hook as a plan would use it: a current span per operation across a yield, errors
    recorded."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    cache = tc.Cache(tiers=[tc.MemoryTier()])
    try:
        hook = instrument(cache, meter_provider=MeterProvider(),
                          tracer_provider=provider).span_hook
    finally:
        cache.close()

    # The engine's plans are generators that yield their I/O to a driver.
    def save_plan() -> Iterator[str]:
        with hook("save", "orders", "store", 3):
            yield "save_many"

    def flush_plan() -> Iterator[str]:
        with hook("flush", "orders", "store", 3):
            yield from save_plan()

    # What the store's own instrumentation would see as its parent, at each yield.
    current_during_io = [
        trace.get_current_span().get_span_context().span_id for _operation in flush_plan()
    ]
    load = hook("load", "users", "store", 2)
    with pytest.raises(tc.StoreError), load:
        raise tc.StoreError("down")
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert set(spans) == {"tiercache.flush", "tiercache.save", "tiercache.load"}
    assert spans["tiercache.save"].parent.span_id == spans["tiercache.flush"].context.span_id
    assert current_during_io == [spans["tiercache.save"].context.span_id]
    assert dict(spans["tiercache.load"].attributes) == {
        "tiercache.operation": "load", "tiercache.namespace": "users",
        "tiercache.layer": "store", "tiercache.keys": 2,
    }
    assert spans["tiercache.load"].status.status_code is StatusCode.ERROR
    assert spans["tiercache.flush"].status.status_code is StatusCode.UNSET
    assert not trace.get_current_span().get_span_context().is_valid


def test_a_cache_gone_is_no_longer_reported(
    redis_url: str, prefix: str, reader: InMemoryMetricReader, meter_provider: Any
) -> None:
    """The instruments hold the cache weakly: once it is closed and garbage, they observe
    nothing."""
    cache = tc.Cache(tiers=[tc.MemoryTier(), tc.RedisTier(redis_url, timeout=1.0)], prefix=prefix)
    cache.namespace("users").get("a")
    instrument(cache, meter_provider=meter_provider)
    points, _ = collect(reader)
    assert point(points, "tiercache.requests", namespace="users", layer="L1:memory",
                 result="miss") == 1
    gone = weakref.ref(cache)
    cache.close()
    del cache
    gc.collect()
    assert gone() is None
    points, _ = collect(reader)
    assert all(not series for series in points.values())


def test_caches_on_one_provider_are_all_reported(
    redis_url: str, prefix: str, reader: InMemoryMetricReader, meter_provider: Any
) -> None:
    """Several caches on one provider: each namespace reported, a shared name summed, one cache
    twice counted once."""
    made = [tc.Cache(tiers=[tc.MemoryTier(), tc.RedisTier(redis_url, timeout=1.0)],
                     prefix=f"{prefix}{i}") for i in range(2)]
    try:
        first, second = made
        for cache, namespace, misses in ((first, "users", 2), (second, "users", 3),
                                         (second, "orders", 1)):
            ns = cache.namespace(namespace)
            for i in range(misses):
                ns.get(f"k{i}")
        instrument(first, meter_provider=meter_provider)
        instrument(second, meter_provider=meter_provider)
        instrument(second, meter_provider=meter_provider)
        points, _ = collect(reader)
    finally:
        for cache in made:
            cache.close()
    assert point(points, "tiercache.requests", namespace="users", layer="L1:memory",
                 result="miss") == 5
    assert point(points, "tiercache.requests", namespace="orders", layer="L1:memory",
                 result="miss") == 1
    assert point(
        points, "tiercache.tier.info", layer="L1:memory", **{"tier.kind": "MemoryTier"}
    ) == 1


def test_a_new_cache_is_reported_after_the_old_one_is_gone(
    redis_url: str, prefix: str, reader: InMemoryMetricReader, meter_provider: Any
) -> None:
    """A cache instrumented on a provider whose first cache was closed and dropped is reported."""
    old = tc.Cache(tiers=[tc.MemoryTier()], prefix=f"{prefix}old")
    instrument(old, meter_provider=meter_provider)
    old.close()
    del old
    gc.collect()
    with tc.Cache(tiers=[tc.MemoryTier(), tc.RedisTier(redis_url, timeout=1.0)],
                  prefix=prefix) as new:
        new.namespace("fresh").get("k")
        instrument(new, meter_provider=meter_provider)
        points, _ = collect(reader)
    assert point(points, "tiercache.requests", namespace="fresh", layer="L1:memory",
                 result="miss") == 1


def test_without_opentelemetry_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing the module without opentelemetry-api fails with the pip install hint."""
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # None: "not importable"
    monkeypatch.delitem(sys.modules, "tiercache.contrib.otel")
    with pytest.raises(ImportError, match=re.escape("pip install 'tiercache[otel]'")):
        importlib.import_module("tiercache.contrib.otel")
