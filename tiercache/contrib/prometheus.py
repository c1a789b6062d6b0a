"""Prometheus metrics for a Cache, read from ``cache.stats()`` at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

try:
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.metrics_core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        InfoMetricFamily,
        Metric,
        SummaryMetricFamily,
    )
    from prometheus_client.samples import Sample
except ImportError as exc:  # pragma: no cover - the test extra installs it
    raise ImportError(
        "tiercache.contrib.prometheus needs prometheus-client: "
        "pip install 'tiercache[prometheus]'"
    ) from exc

from ._metrics import METRICS, Reading, StatsSource, read

__all__ = ["TiercacheCollector", "register"]

_SUMMARY = "tiercache_layer_duration_seconds"
"""The three latency readings (count, total, quantiles) are one Prometheus summary."""


def register(cache: StatsSource, registry: CollectorRegistry | None = None) -> TiercacheCollector:
    """Expose ``cache``'s counters to Prometheus; they are read at each scrape.

    Nothing is added to the cache's hit path: a scrape calls ``cache.stats()``
    once and turns it into metric families. Works for ``Cache`` and
    ``AsyncCache`` (whose ``stats()`` is a plain method too).

    Args:
        cache: the cache to expose.
        registry: where to register; ``prometheus_client.REGISTRY`` by default.

    Returns:
        The collector, for ``registry.unregister(collector)``.

    Raises:
        ValueError: the registry already has these metric names (another
            cache registered on it: give each cache its own registry).
    """
    collector = TiercacheCollector(cache)
    (REGISTRY if registry is None else registry).register(collector)
    return collector


class TiercacheCollector:
    """A custom collector: one ``cache.stats()`` call per scrape, no state of its own.

    Keys never become labels: the labels are the namespace, the layer
    (``"L1:memory"``, ``"L2:redis"``, ``"store"``, as in ``stats()``), the
    result, the quantile and the tier's class, all bounded by configuration.
    """

    def __init__(self, cache: StatsSource) -> None:
        self.cache = cache

    def describe(self) -> Iterator[Metric]:
        """The families without samples: lets the registry find clashing names
        at ``register()`` without taking a snapshot."""
        return _families({metric.key: [] for metric in METRICS})

    def collect(self) -> Iterator[Metric]:
        """The families of one ``stats()`` snapshot."""
        return _families(read(self.cache.stats()))


def _families(readings: dict[str, list[Reading]]) -> Iterator[Metric]:
    summary: SummaryMetricFamily | None = None
    for metric in METRICS:
        if metric.prometheus == _SUMMARY:
            if summary is None:
                summary = _summary(readings)
                yield summary
            continue
        family: Metric
        if metric.key == "tier_info":
            family = InfoMetricFamily(metric.prometheus, metric.help,
                                      labels=metric.labels)
            for labels, _one in readings[metric.key]:
                family.add_metric([labels[name] for name in metric.labels], {})
        elif metric.kind == "counter":
            family = CounterMetricFamily(metric.prometheus, metric.help, labels=metric.labels)
            for labels, value in readings[metric.key]:
                family.add_metric([labels[name] for name in metric.labels], value)
        else:
            family = GaugeMetricFamily(metric.prometheus, metric.help, labels=metric.labels)
            for labels, value in readings[metric.key]:
                family.add_metric([labels[name] for name in metric.labels], value)
        yield family


def _summary(readings: dict[str, list[Reading]]) -> SummaryMetricFamily:
    """Count, sum and the quantiles stats() keeps, as one summary per namespace and layer.

    ``stats()`` holds a window of recent samples, not buckets, so a summary
    (quantiles over a recent window) is what it can faithfully be.
    """
    family = SummaryMetricFamily(
        _SUMMARY,
        "Duration of a layer's timed calls: tier reads, one per round trip (a "
        "single-key L1 hit is not timed), and store load/save calls; quantiles "
        "over the most recent 2,048.",
        labels=("namespace", "layer"),
    )
    totals = {(labels["namespace"], labels["layer"]): value
              for labels, value in readings["operation_time"]}
    for labels, count in readings["operations"]:
        where = (labels["namespace"], labels["layer"])
        family.add_metric(list(where), count_value=int(count), sum_value=totals[where])
    # SummaryMetricFamily has no quantile argument: quantile samples are added
    # as prometheus_client's own Summary adds them, by name and labels.
    for labels, value in readings["duration"]:
        family.samples.append(Sample(_SUMMARY, dict(labels), value))
    return family
