"""Counters and latency per namespace and layer: what each layer absorbs."""

from __future__ import annotations

from typing import Any

__all__ = ["Latency", "LayerStats"]

LATENCY_WINDOW = 2048
"""Most recent samples kept per layer for percentiles."""


class Latency:
    """Count, total and a window of recent samples; percentiles from the window.

    Recording is a few list operations under the GIL: no lock, and a lost
    sample under a race only blurs a percentile.
    """

    __slots__ = ("_next", "_window", "count", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self._window: list[float] = []
        self._next = 0

    def add(self, seconds: float) -> None:
        """Record one operation's duration in seconds."""
        self.count += 1
        self.total += seconds
        window = self._window
        if len(window) < LATENCY_WINDOW:
            window.append(seconds)
        else:
            self._next = (self._next + 1) % LATENCY_WINDOW
            window[self._next] = seconds

    def percentile(self, q: float) -> float | None:
        """The ``q``-quantile (0..1) of the recent window, in seconds; None when empty."""
        ordered = sorted(self._window)
        if not ordered:
            return None
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def snapshot(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "mean_us": (self.total / self.count * 1e6) if self.count else None,
            "p50_us": _us(self.percentile(0.50)),
            "p99_us": _us(self.percentile(0.99)),
        }


def _us(value: float | None) -> float | None:
    return None if value is None else value * 1e6


class LayerStats:
    """What one namespace saw at one layer (a tier, or the store).

    Plain attribute increments: the L1 hit path pays one ``+= 1``. Under
    concurrent threads a count can lose an increment; counts are for
    watching, not for accounting.
    """

    __slots__ = ("deletes", "errors", "hits", "latency", "misses", "sets", "undecodable")

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self.sets = 0
        self.deletes = 0
        self.errors = 0
        self.undecodable = 0
        self.latency = Latency()

    @property
    def requests(self) -> int:
        """Keys asked of this layer: hits plus misses."""
        return self.hits + self.misses

    def snapshot(self) -> dict[str, Any]:
        requests = self.hits + self.misses
        return {
            "requests": requests,
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": self.hits / requests if requests else None,
            "sets": self.sets,
            "deletes": self.deletes,
            "errors": self.errors,
            "undecodable": self.undecodable,
            "latency": self.latency.snapshot(),
        }
