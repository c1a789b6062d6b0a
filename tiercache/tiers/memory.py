"""MemoryTier: the in-process L1, an LRU of Python objects built on cachetools."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import cachetools

from .._types import seconds
from ..errors import ConfigurationError
from .base import Hit, TierEntry, Undecodable

__all__ = ["DEFAULT_MAXSIZE", "MemoryTier"]

DEFAULT_MAXSIZE = 10_000
"""Entries a MemoryTier holds when ``maxsize`` is not given."""

_Entry = tuple[Any, float, int]  # (value, expires_at on the cache clock, size in bytes)


class _LRU(cachetools.LRUCache):  # type: ignore[type-arg]
    """cachetools' LRU with a second bound (entries as well as bytes) and an eviction count."""

    def __init__(self, maxentries: int, maxbytes: int | None) -> None:
        if maxbytes is None:
            super().__init__(maxentries)
        else:
            super().__init__(maxbytes, getsizeof=lambda entry: entry[2])
        self.maxentries = maxentries
        self.evictions = 0

    def __setitem__(self, key: str, value: _Entry) -> None:
        if key not in self:
            while len(self) >= self.maxentries:
                self.popitem()
        super().__setitem__(key, value)

    def popitem(self) -> tuple[str, _Entry]:
        item: tuple[str, _Entry] = super().popitem()
        self.evictions += 1
        return item


class MemoryTier:
    """An in-process LRU of Python objects, bounded by entries and optionally bytes.

    The cached object itself is returned on a hit, which is what makes a hit
    cost a dict lookup, a time compare and a counter: a caller that mutates
    a returned value mutates the cached copy. Pass ``copy=True`` to the
    namespace to get a fresh copy on every read instead.

    Reads take no lock (each step is one atomic operation on the
    interpreter's dicts, and the LRU order tolerates a lost touch); writes
    and evictions are serialised by a lock.

    Args:
        maxsize: most entries held; the least recently used is evicted.
        maxbytes: optional bound on the sum of the entries' serialized sizes.
        ttl: ceiling on every entry's time to live (``None``: none).
        name: label in stats.
    """

    serialized = False
    nonblocking = True  # AsyncCache calls it directly: no I/O, no waiting

    def __init__(
        self,
        *,
        maxsize: int = DEFAULT_MAXSIZE,
        maxbytes: int | None = None,
        ttl: float | timedelta | None = None,
        name: str = "memory",
    ) -> None:
        if not isinstance(maxsize, int) or isinstance(maxsize, bool) or maxsize < 1:
            raise ConfigurationError(f"maxsize must be a positive int, got {maxsize!r}")
        if maxbytes is not None and (
            not isinstance(maxbytes, int) or isinstance(maxbytes, bool) or maxbytes < 1
        ):
            raise ConfigurationError(f"maxbytes must be a positive int, got {maxbytes!r}")
        self.name = name
        self.ttl = seconds(ttl)
        self.maxsize = maxsize
        self.maxbytes = maxbytes
        self._data = _LRU(maxsize, maxbytes)
        self._lock = threading.Lock()
        # The namespace's hot path calls this directly: LRU touch included.
        self.lookup: Callable[[str], _Entry] = self._data.__getitem__

    def __repr__(self) -> str:
        return f"MemoryTier(maxsize={self.maxsize}, maxbytes={self.maxbytes}, ttl={self.ttl})"

    def __len__(self) -> int:
        return len(self._data)

    @property
    def evictions(self) -> int:
        """Entries evicted to respect ``maxsize`` or ``maxbytes`` since creation."""
        return self._data.evictions

    @property
    def currbytes(self) -> int | None:
        """Sum of the entries' sizes when bounded by bytes, else ``None``."""
        return int(self._data.currsize) if self.maxbytes is not None else None

    def get_many(self, keys: Sequence[str], now: float) -> list[Hit | Undecodable | None]:
        out: list[Hit | Undecodable | None] = []
        lookup = self.lookup
        for key in keys:
            try:
                value, expires_at, _size = lookup(key)
            except KeyError:
                out.append(None)
                continue
            if expires_at > now:
                out.append((value, None if expires_at == math.inf else expires_at - now))
            else:
                out.append(None)
                self._discard(key, expires_at)
        return out

    def _discard(self, key: str, expires_at: float) -> None:
        """Drop an expired entry, unless a writer replaced it meanwhile."""
        with self._lock:
            entry = self._data.get(key)
            if entry is not None and entry[1] == expires_at:
                del self._data[key]

    def set_many(self, entries: Sequence[TierEntry], now: float) -> None:
        ceiling = self.ttl
        maxbytes = self.maxbytes
        with self._lock:
            for key, value, ttl, size in entries:
                if ceiling is not None and (ttl is None or ttl > ceiling):
                    ttl = ceiling
                if maxbytes is not None and size > maxbytes:
                    # Larger than the whole tier: keep it out, and drop an older copy.
                    self._data.pop(key, None)
                    continue
                self._data[key] = (value, math.inf if ttl is None else now + ttl, size)

    def delete_many(self, keys: Sequence[str]) -> None:
        with self._lock:
            for key in keys:
                self._data.pop(key, None)

    def delete_prefix(self, prefix: str) -> None:
        with self._lock:
            for key in [k for k in self._data if k.startswith(prefix)]:
                del self._data[key]

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._data.clear()

    def close(self) -> None:
        self.clear()
