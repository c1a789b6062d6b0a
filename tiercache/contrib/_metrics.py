"""The metrics read from ``Cache.stats()``: one table and one reading, rendered by prometheus
and otel."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

__all__ = ["METRICS", "Metric", "Reading", "StatsSource", "read"]

Kind = Literal["counter", "gauge", "updown"]
"""counter: only grows; updown: a level whose values add up across series
(entries, bytes, pending writes); gauge: a level that does not (quantiles)."""

Reading = tuple[dict[str, str], float]
"""One series: its labels (namespace, layer, ...) and its value in base units."""


class StatsSource(Protocol):
    """Anything with ``stats()`` shaped like ``Cache.stats()``: Cache and AsyncCache alike."""

    def stats(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class Metric:
    """One metric, named once for Prometheus and once for OpenTelemetry."""

    key: str
    prometheus: str  # without the "_total" a counter gets in the exposition
    otel: str
    kind: Kind
    unit: str  # UCUM, as OpenTelemetry wants it
    labels: tuple[str, ...]
    help: str


_LAYER = ("namespace", "layer")

METRICS: tuple[Metric, ...] = (
    Metric("requests", "tiercache_requests", "tiercache.requests", "counter", "{request}",
           (*_LAYER, "result"),
           "Keys asked of a layer, by result (hit or miss). For the store layer: "
           "keys past every tier, hit when the store (or a loader) had them."),
    Metric("errors", "tiercache_errors", "tiercache.errors", "counter", "{error}", _LAYER,
           "Failed calls to a layer (reads, writes and deletes; a failed batch counts once)."),
    Metric("undecodable", "tiercache_undecodable", "tiercache.undecodable", "counter",
           "{entry}", _LAYER, "Entries a layer held that could not be decoded (also misses)."),
    Metric("sets", "tiercache_sets", "tiercache.sets", "counter", "{entry}", _LAYER,
           "Entries written to a layer by writes (store: keys saved); read backfills "
           "are not counted."),
    Metric("deletes", "tiercache_deletes", "tiercache.deletes", "counter", "{entry}", _LAYER,
           "Entries deleted from a layer."),
    Metric("operations", "tiercache_layer_duration_seconds", "tiercache.layer.operations",
           "counter", "{operation}", _LAYER,
           "Timed calls to a layer: tier reads, one per round trip (a single-key L1 "
           "hit is not timed), and store load/save calls."),
    Metric("operation_time", "tiercache_layer_duration_seconds",
           "tiercache.layer.operation.time", "counter", "s", _LAYER,
           "Total seconds spent in the timed calls to a layer."),
    Metric("duration", "tiercache_layer_duration_seconds",
           "tiercache.layer.operation.duration", "gauge", "s", (*_LAYER, "quantile"),
           "Duration quantiles of a layer's most recent 2,048 timed calls."),
    Metric("bus_publish_errors", "tiercache_bus_publish_errors", "tiercache.bus.publish_errors",
           "counter", "{error}", ("namespace",),
           "Invalidation announcements that could not be published (kept for replay)."),
    Metric("purges_pending", "tiercache_purges_pending", "tiercache.purges.pending", "updown",
           "{key}", ("namespace",),
           "Keys whose purge waits for Redis to answer (a whole-namespace purge counts 1)."),
    Metric("purges_replayed", "tiercache_purges_replayed", "tiercache.purges.replayed",
           "counter", "{batch}", ("namespace",),
           "Remembered purges applied once Redis answered again (batches, per tier)."),
    Metric("write_back_flushed", "tiercache_write_back_flushed",
           "tiercache.write_back.flushed", "counter", "{entry}", ("namespace",),
           "Write-back entries written to the store and acknowledged by this process."),
    Metric("write_back_store_errors", "tiercache_write_back_store_errors",
           "tiercache.write_back.store_errors", "counter", "{error}", ("namespace",),
           "Failed write-back store writes (each failed entry is retried with backoff)."),
    Metric("write_back_dead_lettered", "tiercache_write_back_dead_lettered",
           "tiercache.write_back.dead_lettered", "counter", "{entry}", ("namespace",),
           "Write-back entries given up on after max_attempts failures."),
    Metric("write_back_pending", "tiercache_write_back_pending", "tiercache.write_back.pending",
           "updown", "{entry}", ("namespace",),
           "Write-back entries waiting in this process's in-memory journal "
           "(a journal kept in Redis is not counted)."),
    Metric("tier_entries", "tiercache_tier_entries", "tiercache.tier.entries", "updown",
           "{entry}", ("layer",), "Entries held by a tier (tiers that know their length)."),
    Metric("tier_bytes", "tiercache_tier_size_bytes", "tiercache.tier.size", "updown", "By",
           ("layer",), "Sum of a tier's entry sizes (tiers bounded by maxbytes)."),
    Metric("tier_evictions", "tiercache_tier_evictions", "tiercache.tier.evictions", "counter",
           "{entry}", ("layer",), "Entries a tier evicted to stay within its size."),
    Metric("tier_info", "tiercache_tier", "tiercache.tier.info", "gauge", "1",
           ("layer", "kind"), "A tier's class (value 1)."),
)

_QUANTILES = (("0.5", "p50_us"), ("0.99", "p99_us"))
_LAYER_COUNTERS = ("errors", "undecodable", "sets", "deletes")
_WRITE_BACK = (("write_back_flushed", "flushed"), ("write_back_store_errors", "store_errors"),
               ("write_back_dead_lettered", "dead_lettered"),
               ("write_back_pending", "pending_local"))


def read(stats: Mapping[str, Any]) -> dict[str, list[Reading]]:
    """Every metric's series in one ``stats()`` snapshot, by ``Metric.key``.

    Microseconds become seconds; a quantile ``stats()`` has no value for (no
    call timed yet) gives no series rather than a made-up zero.
    """
    out: dict[str, list[Reading]] = {metric.key: [] for metric in METRICS}
    for namespace, ns in stats["namespaces"].items():
        layers = dict(ns["tiers"])
        if ns["store"] is not None:
            layers["store"] = ns["store"]
        for layer, counts in layers.items():
            labels = {"namespace": namespace, "layer": layer}
            out["requests"].append(({**labels, "result": "hit"}, counts["hits"]))
            out["requests"].append(({**labels, "result": "miss"}, counts["misses"]))
            for key in _LAYER_COUNTERS:
                out[key].append((labels, counts[key]))
            latency = counts["latency"]
            out["operations"].append((labels, latency["count"]))
            # stats() keeps the mean, not the total: count x mean gives the total back.
            mean = latency["mean_us"]
            out["operation_time"].append(
                (labels, 0.0 if mean is None else latency["count"] * mean / 1e6)
            )
            for quantile, field in _QUANTILES:
                value = latency[field]
                if value is not None:
                    out["duration"].append(({**labels, "quantile": quantile}, value / 1e6))
        labels = {"namespace": namespace}
        out["bus_publish_errors"].append((labels, ns["bus_errors"]))
        out["purges_pending"].append((labels, ns["purges_pending"]))
        out["purges_replayed"].append((labels, ns["purges_replayed"]))
        write_back = ns.get("write_back")
        if write_back is not None:
            for key, field in _WRITE_BACK:
                out[key].append((labels, write_back[field]))
    for layer, info in stats["tiers"].items():
        labels = {"layer": layer}
        out["tier_info"].append(({**labels, "kind": info["kind"]}, 1))
        if "entries" in info:
            out["tier_entries"].append((labels, info["entries"]))
        if info.get("currbytes") is not None:
            out["tier_bytes"].append((labels, info["currbytes"]))
        if "evictions" in info:
            out["tier_evictions"].append((labels, info["evictions"]))
    return out
