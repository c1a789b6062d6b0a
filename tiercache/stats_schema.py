"""TypedDicts of the structure ``Cache.stats()`` returns: the one place its keys are written
down."""

from __future__ import annotations

from typing import TypedDict

__all__ = [
    "CacheStats",
    "LatencySnapshot",
    "LayerSnapshot",
    "NamespaceStats",
    "TierInfo",
    "WriteBackStats",
]

# LayerSnapshot and LatencySnapshot are what stats.LayerStats.snapshot() and
# stats.Latency.snapshot() return: named apart from those counter classes.

# The TypedDicts use ``total=False`` bases rather than ``NotRequired`` because
# the package supports Python 3.10, where ``typing.NotRequired`` does not exist
# and typing_extensions is not a dependency.


class LatencySnapshot(TypedDict):
    """Timed calls of one layer: each round trip counts once, whatever its batch size.

    Tiers: reads (a single-key L1 hit is not timed). Store: ``load_many``
    and ``save_many`` calls alike. Microseconds; the quantiles come from
    the most recent 2,048 calls (``tiercache.stats.LATENCY_WINDOW``).
    ``None`` while nothing was timed.
    """

    count: int
    mean_us: float | None
    p50_us: float | None
    p99_us: float | None


class LayerSnapshot(TypedDict):
    """What one namespace saw at one layer: a tier, or its store.

    ``requests``, ``hits`` and ``misses`` count keys, not calls. ``errors``
    counts failed calls of any kind (reads, writes, deletes). ``undecodable``
    entries are counted as misses too.
    """

    requests: int
    hits: int
    misses: int
    hit_rate: float | None
    sets: int
    deletes: int
    errors: int
    undecodable: int
    latency: LatencySnapshot


class WriteBackStats(TypedDict):
    """The write-back policy's counters in this process."""

    flushed: int
    store_errors: int
    dead_lettered: int
    pending_local: int


class _NamespaceStatsRequired(TypedDict):
    tiers: dict[str, LayerSnapshot]
    store: LayerSnapshot | None
    bus_errors: int
    purges_pending: int
    purges_replayed: int


class NamespaceStats(_NamespaceStatsRequired, total=False):
    """One namespace: its tiers by ``"L<n>:<tier name>"``, its store, its bus and purges.

    ``write_back`` is present only while the namespace's write policy has
    counters (``WriteBack``).
    """

    write_back: WriteBackStats


class _TierInfoRequired(TypedDict):
    kind: str


class TierInfo(_TierInfoRequired, total=False):
    """One tier of the cache, shared by its namespaces: what the tier itself reports.

    ``evictions`` and ``currbytes`` are present when the tier has them
    (``MemoryTier``; ``currbytes`` is ``None`` unless it is bounded by
    ``maxbytes``), ``entries`` when it has a length (``MemoryTier``).
    """

    evictions: int
    currbytes: int | None
    entries: int


class CacheStats(TypedDict):
    """What ``Cache.stats()`` and ``AsyncCache.stats()`` return."""

    namespaces: dict[str, NamespaceStats]
    tiers: dict[str, TierInfo]
