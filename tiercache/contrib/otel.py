"""OpenTelemetry metrics for a Cache (observed at collection time) and the span hook the engine
can call."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

try:
    from opentelemetry import metrics, trace
    from opentelemetry.metrics import Asynchronous, CallbackOptions, MeterProvider, Observation
    from opentelemetry.trace import SpanKind, TracerProvider
except ImportError as exc:  # pragma: no cover - the test extra installs it
    raise ImportError(
        "tiercache.contrib.otel needs opentelemetry-api: pip install 'tiercache[otel]'"
    ) from exc

from .. import __version__
from ._metrics import METRICS, Metric, Reading, StatsSource, read

__all__ = ["ATTRIBUTES", "Instrumentation", "SpanHook", "instrument", "span_hook"]

ATTRIBUTES = {
    "namespace": "tiercache.namespace",
    "layer": "tiercache.layer",
    "result": "tiercache.result",
    "quantile": "tiercache.quantile",
    "kind": "tiercache.tier.kind",
}
"""Each label of the metric table and the attribute it is under OpenTelemetry."""


class SpanHook(Protocol):
    """What the engine calls around I/O below L1 (never around an L1 hit).

    ``operation`` is one of ``"load"`` (a store or loader ``load_many``),
    ``"save"`` and ``"delete"`` (store writes), ``"flush"`` (one write-back
    batch to the store) and ``"fill"`` (a backfill of a shared tier after a
    read); ``layer`` is ``"store"`` or the tier's ``"L<n>:<name>"``; ``keys``
    the batch's size (never the keys themselves). The context manager is
    entered before the operation and exited after it, with the exception if
    it failed. The engine keeps ``None`` when no hook is installed, so an
    uninstrumented cache pays one ``is None`` test per operation.
    """

    # Declared here until the engine calls it; the engine cannot import this
    # module without opentelemetry, so its own copy of this Protocol belongs
    # in the engine then, and hooks made here fit it structurally.

    def __call__(
        self, operation: str, namespace: str, layer: str, keys: int
    ) -> AbstractContextManager[object]: ...


def span_hook(tracer_provider: TracerProvider | None = None) -> SpanHook:
    """A ``SpanHook`` making one span per operation, current while it runs.

    Being current, the span is the parent of whatever the store's own
    instrumentation traces (an SQL query, an HTTP call). A failed operation's
    span records the exception and has an error status.

    Args:
        tracer_provider: the provider; the global one by default.
    """
    tracer = trace.get_tracer("tiercache", __version__, tracer_provider=tracer_provider)

    def hook(
        operation: str, namespace: str, layer: str, keys: int
    ) -> AbstractContextManager[object]:
        return tracer.start_as_current_span(
            f"tiercache.{operation}",
            kind=SpanKind.INTERNAL,
            attributes={
                "tiercache.operation": operation,
                "tiercache.namespace": namespace,
                "tiercache.layer": layer,
                "tiercache.keys": keys,
            },
        )

    return hook


@dataclass(frozen=True)
class Instrumentation:
    """What ``instrument()`` set up: its observable instruments and its span hook."""

    instruments: tuple[Asynchronous, ...]
    span_hook: SpanHook


def instrument(
    cache: StatsSource,
    meter_provider: MeterProvider | None = None,
    tracer_provider: TracerProvider | None = None,
) -> Instrumentation:
    """Report ``cache``'s counters as OpenTelemetry observable instruments.

    Nothing is added to the hit path: at each collection the instruments'
    callbacks read one ``cache.stats()`` snapshot. Works for ``Cache`` and
    ``AsyncCache``. The instruments hold the cache weakly: once it is
    garbage, they report nothing of it.

    Every cache instrumented on one meter provider is reported by one set
    of instruments (the SDK keeps the first instrument of a name and ignores
    the callbacks of later ones): series with the same attributes (the same
    namespace name in two caches) add up, and take the larger value for the
    duration quantiles. Instrumenting a cache twice reports it once.

    Spans need the engine to call a hook around store loads, flushes and
    fills; ``Instrumentation.span_hook`` is that hook, ready for when it does.

    Args:
        cache: the cache to report (weakly referenced).
        meter_provider: the provider; the global one by default.
        tracer_provider: the provider of the span hook's tracer; the global
            one by default.

    Returns:
        The instruments reporting the cache and the span hook.
    """
    provider = metrics.get_meter_provider() if meter_provider is None else meter_provider
    with _OBSERVED_LOCK:
        observed = _OBSERVED.get(provider)
        if observed is None:
            observed = _OBSERVED[provider] = _Observed()
            observed.instruments = _instruments(provider, observed)
        observed.add(cache)
    return Instrumentation(observed.instruments, span_hook(tracer_provider))


def _instruments(provider: MeterProvider, observed: _Observed) -> tuple[Asynchronous, ...]:
    meter = metrics.get_meter("tiercache", __version__, meter_provider=provider)
    create = {
        "counter": meter.create_observable_counter,
        "updown": meter.create_observable_up_down_counter,
        "gauge": meter.create_observable_gauge,
    }
    return tuple(
        create[metric.kind](
            metric.otel,
            callbacks=[_callback(observed, metric)],
            unit=metric.unit,
            description=metric.help,
        )
        for metric in METRICS
    )


class _Observed:
    """The caches one provider's instruments report, and one snapshot of them per collection.

    A collection calls each callback once, in an order the API does not
    promise; so a callback that finds its own metric already read from the
    current snapshot knows a new collection began, and takes a fresh one.
    """

    def __init__(self) -> None:
        self.instruments: tuple[Asynchronous, ...] = ()
        self._caches: weakref.WeakSet[StatsSource] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._readings: dict[str, list[Reading]] | None = None
        self._read: set[str] = set()

    def add(self, cache: StatsSource) -> None:
        with self._lock:
            self._caches.add(cache)

    def take(self, key: str) -> list[Reading]:
        with self._lock:
            if self._readings is None or key in self._read:
                self._readings = _merged([read(cache.stats()) for cache in list(self._caches)])
                self._read = set()
            self._read.add(key)
            return self._readings.get(key, [])


_OBSERVED: weakref.WeakKeyDictionary[MeterProvider, _Observed] = weakref.WeakKeyDictionary()
"""Per meter provider, what its tiercache instruments report (weakly: a provider
shut down and dropped takes its entry with it)."""
_OBSERVED_LOCK = threading.Lock()


def _merged(snapshots: list[dict[str, list[Reading]]]) -> dict[str, list[Reading]]:
    """One snapshot of several caches: equal series add up (gauges: the larger)."""
    if len(snapshots) == 1:
        return snapshots[0]
    out: dict[str, list[Reading]] = {}
    for metric in METRICS:
        series: dict[frozenset[tuple[str, str]], Reading] = {}
        for readings in snapshots:
            for labels, value in readings.get(metric.key, []):
                where = frozenset(labels.items())
                if where in series:
                    old = series[where][1]
                    value = max(old, value) if metric.kind == "gauge" else old + value
                series[where] = (labels, value)
        out[metric.key] = list(series.values())
    return out


def _callback(
    observed: _Observed, metric: Metric
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def observe(_options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(value, _attributes(labels)) for labels, value in observed.take(metric.key)
        ]

    return observe


def _attributes(labels: dict[str, str]) -> dict[str, Any]:
    return {ATTRIBUTES[name]: value for name, value in labels.items()}
