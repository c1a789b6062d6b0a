"""MemoryTier: the in-process L1, Python objects kept by LRU (cachetools) or W-TinyLFU."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any, Literal

import cachetools

from .._types import seconds
from ..errors import ConfigurationError
from .admission import TinyLFU
from .base import Hit, TierEntry, Undecodable

__all__ = ["ADMISSIONS", "DEFAULT_ADMISSION", "DEFAULT_MAXSIZE", "READ_BUFFER_SIZE", "MemoryTier"]

DEFAULT_MAXSIZE = 10_000
"""Entries a MemoryTier holds when ``maxsize`` is not given."""

Admission = Literal["lru", "tinylfu"]
ADMISSIONS: tuple[Admission, ...] = ("lru", "tinylfu")
"""The policies a MemoryTier can keep its entries by."""

DEFAULT_ADMISSION: Admission = "tinylfu"
"""The policy of a MemoryTier when ``admission`` is not given: W-TinyLFU, chosen by
measured mean request latency (``python -m benchmarks.bench_admission``): on Zipf 0.8 at
1% capacity it hits about 31% of requests where LRU hits 20%, and each extra hit saves an
L2 round trip worth far more than tinylfu's dearer fills."""

READ_BUFFER_SIZE = 128
"""Hits a tinylfu MemoryTier remembers between two writes; later ones are not counted."""

_Entry = tuple[Any, float, int]  # (value, expires_at on the cache clock, size in bytes)


def _key_charge(key: str) -> int:
    """What a key adds to an entry's charge under ``maxbytes``: its length in UTF-8."""
    # isascii() reads a flag of the str object: no encoding for the usual ASCII key.
    return len(key) if key.isascii() else len(key.encode("utf-8", "surrogatepass"))


class _LRU(cachetools.LRUCache):  # type: ignore[type-arg]
    """cachetools' LRU with a second bound (entries as well as bytes) and an eviction count."""

    def __init__(self, maxentries: int, maxbytes: int | None) -> None:
        self._key_bytes = 0  # the key being stored's share of its charge (see _charge)
        if maxbytes is None:
            super().__init__(maxentries)
        else:
            super().__init__(maxbytes, getsizeof=self._charge)
        self.maxentries = maxentries
        self.evictions = 0

    def _charge(self, entry: _Entry) -> int:
        # cachetools sizes the value alone; __setitem__ leaves the key's bytes here first.
        return entry[2] + self._key_bytes

    def __setitem__(self, key: str, value: _Entry) -> None:
        if key not in self:
            while len(self) >= self.maxentries:
                self.popitem()
        self._key_bytes = _key_charge(key)
        super().__setitem__(key, value)

    def popitem(self) -> tuple[str, _Entry]:
        # Writers hold the tier's lock, but readers touch the LRU order
        # without it; a touch between cachetools' iter() and next() over that
        # order raises RuntimeError before anything changed, so try again.
        for _attempt in range(1000):
            try:
                item: tuple[str, _Entry] = super().popitem()
            except RuntimeError:
                continue
            self.evictions += 1
            return item
        raise RuntimeError("LRU order kept changing during eviction")  # pragma: no cover


class _TinyLFUMap:
    """Entries in a plain dict; which ones stay is decided by a :class:`TinyLFU` policy.

    A hit costs a dict lookup and, while the read buffer has room, an append
    of the key to it: counting the hit in the sketch and moving the key up its
    region is pure-Python work that would triple the cost of a hit, so it is
    deferred, as Caffeine does, to the next write, which drains the buffer
    under the tier's lock. Hits beyond the buffer's size are not counted, which
    costs the policy a little accuracy and never correctness.
    """

    def __init__(self, maxentries: int, maxbytes: int | None) -> None:
        self.data: dict[str, _Entry] = {}
        self.reads: list[str] = []
        self.policy = TinyLFU(maxentries)
        self.maxbytes = maxbytes
        self.currsize = 0
        self.evictions = 0
        self.lookup = self._make_lookup(self.data, self.reads)

    @staticmethod
    def _make_lookup(data: dict[str, _Entry], reads: list[str]) -> Callable[[str], _Entry]:
        record = reads.append
        limit = READ_BUFFER_SIZE
        size = len

        def lookup(key: str) -> _Entry:
            entry = data[key]  # KeyError on a miss, as cachetools' __getitem__
            if size(reads) < limit:
                record(key)
            return entry

        return lookup

    def drain(self) -> None:
        """Apply the buffered hits to the policy. Call under the tier's lock."""
        reads = self.reads
        n = len(reads)
        if n:
            hits = reads[:n]
            del reads[:n]  # appends racing this slice land after n and are kept
            record = self.policy.record
            data = self.data
            for key in hits:
                if key in data:
                    record(key)

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def get(self, key: str) -> _Entry | None:
        return self.data.get(key)

    def __setitem__(self, key: str, entry: _Entry) -> None:
        if self.reads:
            self.drain()
        data = self.data
        old = data.get(key)
        data[key] = entry
        if old is None:
            if self.maxbytes is not None:
                self.currsize += entry[2] + _key_charge(key)
            for gone in self.policy.add(key):
                self._evicted(gone)
        else:
            if self.maxbytes is not None:
                self.currsize += entry[2] - old[2]
            self.policy.record(key)  # a write is an access, as in Caffeine
        if self.maxbytes is not None:
            while self.currsize > self.maxbytes:
                victim = self.policy.evict()
                if victim is None:
                    break
                self._evicted(victim)

    def _uncharge(self, key: str, entry: _Entry) -> None:
        if self.maxbytes is not None:
            self.currsize -= entry[2] + _key_charge(key)

    def _evicted(self, key: str) -> None:
        self._uncharge(key, self.data.pop(key))
        self.evictions += 1

    def __delitem__(self, key: str) -> None:
        self._uncharge(key, self.data.pop(key))
        self.policy.remove(key)

    def pop(self, key: str, default: None = None) -> _Entry | None:
        entry = self.data.pop(key, None)
        if entry is None:
            return default
        self._uncharge(key, entry)
        self.policy.remove(key)
        return entry

    def clear(self) -> None:
        self.data.clear()  # the same dict: lookup is bound to it
        del self.reads[:]
        self.policy.clear()
        self.currsize = 0


class MemoryTier:
    """An in-process cache of Python objects, bounded by entries and optionally bytes.

    The cached object itself is returned on a hit, which is what makes a hit
    cost a dict lookup, a time compare and a counter: a caller that mutates
    a returned value mutates the cached copy. Pass ``copy=True`` to the
    namespace to get a fresh copy on every read instead.

    Reads take no lock (each step is one atomic operation on the
    interpreter's dicts and lists, and the eviction order tolerates a lost
    touch); writes and evictions are serialised by a lock.

    Which entries stay is the ``admission`` policy's choice:

    - ``"tinylfu"`` (the default): W-TinyLFU, as in Caffeine (see
      :mod:`tiercache.tiers.admission`): a new entry that would push out one
      used more often is itself dropped, so scans and one-time keys do not
      flush a hot working set, and skewed workloads hit more often (Zipf 0.8
      at 1% capacity: about 31% of requests instead of 20%). A hit costs no
      more than an LRU hit (the key is appended to a bounded buffer that the
      next write applies to the policy); a miss's fill costs a few
      microseconds more, far less than the trip to L2 that each extra hit saves.
    - ``"lru"``: the least recently used entry is evicted (cachetools' LRU):
      for strict recency order, where the newest entry must outlive older
      ones (under W-TinyLFU, a new entry that is not used again may lose its
      place to an older, more used one as soon as the next one arrives).

    Args:
        maxsize: most entries held.
        maxbytes: optional bound on the bytes the entries are charged; the
            policy evicts until both bounds hold. An entry is charged its key's
            length in UTF-8 plus the size its writer gives for the value: the
            value's serialized size (the bytes it takes in Redis), as the
            namespace reports it. The Python object held can be larger (a dict
            of short strings takes several times its msgpack size), and the
            tier's own bookkeeping, about 220 to 240 bytes per entry
            (``benchmarks/bench_memory.py``), is not charged: ``maxsize``
            bounds that. An entry charged more than ``maxbytes`` is not
            stored, and an older copy of its key is dropped.
        ttl: ceiling on every entry's time to live (``None``: none).
        name: label in stats.
        admission: ``"tinylfu"`` (default) or ``"lru"``.

    Raises:
        ConfigurationError: a bound is not a positive int, the ttl is not a
            positive finite number, or ``admission`` is not one of :data:`ADMISSIONS`.
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
        admission: Admission = DEFAULT_ADMISSION,
    ) -> None:
        if not isinstance(maxsize, int) or isinstance(maxsize, bool) or maxsize < 1:
            raise ConfigurationError(f"maxsize must be a positive int, got {maxsize!r}")
        if maxbytes is not None and (
            not isinstance(maxbytes, int) or isinstance(maxbytes, bool) or maxbytes < 1
        ):
            raise ConfigurationError(f"maxbytes must be a positive int, got {maxbytes!r}")
        if not isinstance(admission, str) or admission not in ADMISSIONS:
            raise ConfigurationError(
                f"admission must be one of {', '.join(map(repr, ADMISSIONS))}, got {admission!r}"
            )
        self.name = name
        self.ttl = seconds(ttl)
        self.maxsize = maxsize
        self.maxbytes = maxbytes
        self.admission: Admission = admission
        self._data: _LRU | _TinyLFUMap
        self._lock = threading.Lock()
        # The namespace's hot path calls ``lookup`` directly: ``(value,
        # expires_at, size)`` or KeyError, the policy's bookkeeping included.
        self.lookup: Callable[[str], _Entry]
        if admission == "tinylfu":
            self._data = _TinyLFUMap(maxsize, maxbytes)
            self.lookup = self._data.lookup
        else:
            self._data = _LRU(maxsize, maxbytes)
            self.lookup = self._data.__getitem__

    def __repr__(self) -> str:
        return (
            f"MemoryTier(maxsize={self.maxsize}, maxbytes={self.maxbytes}, ttl={self.ttl}, "
            f"admission={self.admission!r})"
        )

    def __len__(self) -> int:
        return len(self._data)

    @property
    def evictions(self) -> int:
        """Entries evicted to respect ``maxsize`` or ``maxbytes`` since creation."""
        return self._data.evictions

    @property
    def currbytes(self) -> int | None:
        """Sum of the entries' charges (key and value bytes) under ``maxbytes``, else ``None``."""
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
        data = self._data
        lock = self._lock
        lock.acquire()  # not ``with``, which doubles the cost of taking the lock
        try:
            for key, value, ttl, size in entries:
                if ceiling is not None and (ttl is None or ttl > ceiling):
                    ttl = ceiling
                if maxbytes is not None and size + _key_charge(key) > maxbytes:
                    # Larger than the whole tier: keep it out, and drop an older copy.
                    data.pop(key, None)
                    continue
                data[key] = (value, math.inf if ttl is None else now + ttl, size)
        finally:
            lock.release()

    def set_one(self, key: str, value: Any, ttl: float | None, size: int, now: float) -> None:
        """``set_many`` of one entry, without building the list (a namespace's single-key fills)."""
        if self.ttl is not None and (ttl is None or ttl > self.ttl):
            ttl = self.ttl
        maxbytes = self.maxbytes
        lock = self._lock
        lock.acquire()
        try:
            if maxbytes is not None and size + _key_charge(key) > maxbytes:
                self._data.pop(key, None)  # as in set_many
            else:
                self._data[key] = (value, math.inf if ttl is None else now + ttl, size)
        finally:
            lock.release()

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
