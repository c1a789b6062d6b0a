"""OpenTelemetry metrics for a Cache (observed at collection time) and the span hook the engine can call."""

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

    def hook(operation: str, namespace: str, layer: str, keys: int) -> AbstractContextManager[object]:
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
    garbage, they report nothing.

    Spans need the engine to call a hook around store loads, flushes and
    fills; ``Instrumentation.span_hook`` is that hook, ready for when it does.

    Args:
        cache: the cache to report (weakly referenced).
        meter_provider: the provider; the global one by default.
        tracer_provider: the provider of the span hook's tracer; the global
            one by default.

    Returns:
        The instruments created and the span hook.
    """
    meter = metrics.get_meter("tiercache", __version__, meter_provider=meter_provider)
    snapshot = _Snapshot(weakref.ref(cache))
    create = {
        "counter": meter.create_observable_counter,
        "updown": meter.create_observable_up_down_counter,
        "gauge": meter.create_observable_gauge,
    }
    instruments: list[Asynchronous] = []
    for metric in METRICS:
        instruments.append(create[metric.kind](
            metric.otel,
            callbacks=[_callback(snapshot, metric)],
            unit=metric.unit,
            description=metric.help,
        ))
    return Instrumentation(tuple(instruments), span_hook(tracer_provider))


class _Snapshot:
    """One ``stats()`` per collection, shared by every instrument's callback.

    A collection calls each callback once, in an order the API does not
    promise; so a callback that finds its own metric already read from the
    current snapshot knows a new collection began, and takes a fresh one.
    """

    def __init__(self, cache: Callable[[], StatsSource | None]) -> None:
        self._cache = cache
        self._lock = threading.Lock()
        self._readings: dict[str, list[Reading]] | None = None
        self._read: set[str] = set()

    def take(self, key: str) -> list[Reading]:
        with self._lock:
            if self._readings is None or key in self._read:
                cache = self._cache()
                self._readings = {} if cache is None else read(cache.stats())
                self._read = set()
            self._read.add(key)
            return self._readings.get(key, [])


def _callback(
    snapshot: _Snapshot, metric: Metric
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def observe(_options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(value, _attributes(labels)) for labels, value in snapshot.take(metric.key)
        ]

    return observe


def _attributes(labels: dict[str, str]) -> dict[str, Any]:
    return {ATTRIBUTES[name]: value for name, value in labels.items()}
