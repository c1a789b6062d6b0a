"""Single-flight loads and fences: one store load per key, and no stale fill after a write."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from typing import Any

__all__ = ["FENCE_SLOTS", "Fence", "Flights"]

FENCE_SLOTS = 4096
"""Generation counters per namespace; keys share slots by hash (a shared slot
only ever skips a fill, never allows a stale one)."""


class Flights:
    """In-process single-flight: at most one load per key at a time.

    The first caller to miss a key leads and loads it; the others wait for
    its result (threads block on a future; coroutines await it).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, Future[Any]] = {}

    def claim(self, keys: Sequence[str]) -> tuple[list[str], dict[str, Future[Any]]]:
        """Split ``keys`` into those we lead (and must land) and those others lead."""
        lead: list[str] = []
        follow: dict[str, Future[Any]] = {}
        with self._lock:
            for key in keys:
                call = self._calls.get(key)
                if call is None:
                    self._calls[key] = Future()
                    lead.append(key)
                else:
                    follow[key] = call
        return lead, follow

    def land(
        self, keys: Iterable[str], results: dict[str, Any], error: BaseException | None
    ) -> None:
        """Publish the leader's results (or its error) to the waiters and forget the calls."""
        with self._lock:
            calls = [(key, self._calls.pop(key, None)) for key in keys]
        for key, call in calls:
            if call is None:
                continue
            if error is not None:
                call.set_exception(error)
            else:
                call.set_result(results.get(key))

    def __len__(self) -> int:
        return len(self._calls)


class Fence:
    """Generation counters that a write bumps, so a racing read knows not to fill.

    The memcache lease idea for local fills: a read notes a key's
    generation before it loads, and fills the tiers only if no write,
    delete or invalidation touched the key meanwhile.
    """

    def __init__(self, slots: int = FENCE_SLOTS) -> None:
        self._slots = slots
        self._gens = [0] * slots
        self._epoch = 0
        self._lock = threading.Lock()

    def snapshot(self, keys: Sequence[str]) -> tuple[int, dict[str, int]]:
        """The generations of ``keys`` now, to compare after a load or a fill."""
        gens, slots = self._gens, self._slots
        return self._epoch, {k: gens[hash(k) % slots] for k in keys}

    def unchanged(self, snapshot: tuple[int, dict[str, int]], keys: Sequence[str]) -> list[bool]:
        """Per key: True if nothing touched it since ``snapshot``.

        ``keys`` may be any of the snapshot's keys, in any order.
        """
        epoch, before = snapshot
        if epoch != self._epoch:
            return [False] * len(keys)
        gens, slots = self._gens, self._slots
        return [gens[hash(k) % slots] == before.get(k) for k in keys]

    def generation(self, key: str) -> tuple[int, int]:
        """One key's ``(epoch, generation)``: the single-key form of ``snapshot``."""
        return self._epoch, self._gens[hash(key) % self._slots]

    def bump(self, keys: Iterable[str]) -> tuple[int, dict[str, int]]:
        """A change of ``keys`` is starting or has ended; returns their generations after it."""
        gens, slots = self._gens, self._slots
        with self._lock:
            keys = list(keys)
            for key in keys:
                gens[hash(key) % slots] += 1
            return self._epoch, {k: gens[hash(k) % slots] for k in keys}

    def moved_alone(
        self,
        first: tuple[int, dict[str, int]],
        second: tuple[int, dict[str, int]],
        keys: Sequence[str],
    ) -> set[str]:
        """The ``keys`` no other change touched between a change's two ``bump`` calls.

        ``first`` and ``second`` are what the two bumps of ``keys`` (distinct)
        returned. A slot holding several of the keys moved once per key at
        each bump, so a key is untouched when its slot moved by exactly that
        many: counting one per key would take a slot shared within the batch
        for a race, and skip (in a store-less namespace: lose) the fill.
        """
        epoch, before = first
        later_epoch, after = second
        if epoch != later_epoch:
            return set()
        slots = self._slots
        per_slot = Counter(hash(k) % slots for k in keys)
        return {k for k in keys if after[k] == before[k] + per_slot[hash(k) % slots]}

    def bump_one(self, key: str) -> tuple[int, int]:
        """The single-key form of ``bump``: ``key``'s ``(epoch, generation)`` after it."""
        slot = hash(key) % self._slots
        gens = self._gens
        lock = self._lock
        lock.acquire()  # not ``with``, which doubles the cost of taking the lock
        try:
            gens[slot] += 1
            return self._epoch, gens[slot]
        finally:
            lock.release()

    def bump_all(self) -> None:
        """Every key changed (``invalidate_all``, a bus gap)."""
        with self._lock:
            self._epoch += 1
