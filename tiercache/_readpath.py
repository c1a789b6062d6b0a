"""The read path: tiers in order, write-back's pending writes, then one fenced, single-flight load."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._core import (
    _NEGATIVE,
    _NOTHING,
    _SLEEP,
    FLIGHT_TIMEOUT,
    LEASE_TTL,
    NamespaceCore,
    _LoaderStore,
    _perf,
)
from ._plan import Plan
from ._types import MISSING, Key
from .errors import SerializationError, TierError
from .keys import MAX_KEY_LENGTH, encode_key, hash_long_key
from .tiers.base import UNDECODABLE, Tier, TierEntry

__all__ = ["ReadPath"]

_Fills = list[list[tuple[int, Any, bytes | None, float | None]]]


class ReadPath(NamespaceCore):
    """The read path, as plans the sync and async drivers both run."""

    def _read(
        self,
        keys: Sequence[Key],
        tier_keys: Sequence[str],
        now: float,
        loader: Callable[[list[Key]], Mapping[Key, Any]] | None,
    ) -> Plan[dict[int, Any]]:
        """The read path for a batch: ``{index: value}``, MISSING for a cached absence."""
        found: dict[int, Any] = {}
        # fills[t]: (index, value, serialized bytes or None, ttl) to write into tier t
        fills: list[list[tuple[int, Any, bytes | None, float | None]]] = [[] for _ in self._tiers]
        pending = yield from self._read_tiers(tier_keys, now, found, fills)
        if pending and self.store is not None and loader is None:
            fields = [encode_key(keys[i]) for i in pending]
            held = yield from self._policy.pending(fields, self)
            if held:
                for n, value in held.items():
                    found[pending[n]] = value  # MISSING: a delete not yet flushed
                pending = [i for n, i in enumerate(pending) if n not in held]
        if pending and (loader is not None or self.store is not None):
            yield from self._load(keys, tier_keys, pending, loader, found, fills)
        for t, tier in enumerate(self._tiers):
            if fills[t]:
                entries = self._entries(tier, tier_keys, fills[t])
                if entries:
                    yield from self._tier_call(t, "set_many", (entries, now))
        return found

    def _read_tiers(
        self,
        tier_keys: Sequence[str],
        now: float,
        found: dict[int, Any],
        fills: list[list[tuple[int, Any, bytes | None, float | None]]],
    ) -> Plan[list[int]]:
        """Ask each tier in turn for what is still missing; returns the indices no tier had."""
        pending = list(range(len(tier_keys)))
        serializer = self._serializer
        for t, tier in enumerate(self._tiers):
            if not pending:
                break
            stats = self.tier_stats[t]
            started = _perf()
            try:
                answers = yield (tier, "get_many", ([tier_keys[i] for i in pending], now))
            except TierError as exc:
                self._tier_failed(t, "read", exc)
                continue
            stats.latency.add(_perf() - started)
            missed = []
            for i, answer in zip(pending, answers):
                if answer is None or answer is UNDECODABLE:
                    if answer is UNDECODABLE:
                        self._undecodable(t, tier_keys[i], "unknown envelope")
                    stats.misses += 1
                    missed.append(i)
                    continue
                raw, remaining = answer
                data: bytes | None = None
                if tier.serialized:
                    data = raw
                    if raw == _NEGATIVE:
                        value = MISSING
                    else:
                        try:
                            value = serializer.loads(raw)
                        except SerializationError as exc:
                            self._undecodable(t, tier_keys[i], str(exc))
                            stats.misses += 1
                            missed.append(i)
                            continue
                else:
                    value = raw
                stats.hits += 1
                found[i] = value
                for upper in range(t):
                    fills[upper].append((i, value, data, self._fill_ttl(upper, remaining)))
            pending = missed
        return pending

    def _load(
        self,
        keys: Sequence[Key],
        tier_keys: Sequence[str],
        pending: list[int],
        loader: Callable[[list[Key]], Mapping[Key, Any]] | None,
        found: dict[int, Any],
        fills: list[list[tuple[int, Any, bytes | None, float | None]]],
    ) -> Plan[None]:
        """Load what no tier had: one load per key across this process's callers.

        The first caller to miss a key leads and loads it; concurrent callers
        wait for its result. The fills are fenced: a key written, deleted or
        invalidated while it was loading is not put back into any tier.
        """
        wanted = [tier_keys[i] for i in pending]
        fence = self._fence.snapshot(wanted)
        lead, follow = self._flights.claim(wanted)
        results: dict[str, Any] = {}
        leading = set(lead)
        if lead:
            mine = [i for i in pending if tier_keys[i] in leading]
            error: BaseException | None = None
            try:
                if len(mine) == 1 and self._lease_tier is not None:
                    # A herd can span processes: lead across them through Redis.
                    value = yield from self._load_shared(keys[mine[0]], tier_keys[mine[0]], loader)
                    results[tier_keys[mine[0]]] = value
                else:
                    loaded = yield from self._load_source([keys[i] for i in mine], loader)
                    for i in mine:
                        results[tier_keys[i]] = loaded.get(keys[i], MISSING)
            except BaseException as exc:
                error = exc
                raise
            finally:
                self._flights.land(lead, results, error)
        for key, call in follow.items():
            results[key] = yield (call, "result", (FLIGHT_TIMEOUT,))
        fresh = dict(zip(wanted, self._fence.unchanged(fence, wanted)))
        negative_ttl = self.config.negative_ttl
        for i in pending:
            key = tier_keys[i]
            value = results.get(key, MISSING)
            fill = key in leading and fresh[key]
            if value is MISSING:
                self.store_stats.misses += 1
                if negative_ttl is not None:
                    found[i] = MISSING
                    if fill:
                        for t in range(len(self._tiers)):
                            fills[t].append((i, MISSING, _NEGATIVE, self._fill_ttl(t, negative_ttl)))
                continue
            self.store_stats.hits += 1
            found[i] = value
            if fill:
                for t in range(len(self._tiers)):
                    fills[t].append((i, value, None, self._fill_ttl(t)))

    def _load_shared(
        self, key: Key, tier_key: str, loader: Callable[[list[Key]], Mapping[Key, Any]] | None
    ) -> Plan[Any]:
        """Load one key with a lease in Redis, so one process of a herd loads it.

        The lease holder loads and fills L2 (and releases the lease once the
        fill is done); the others poll L2 for its value. A lease expires, so
        a waiter never waits for a holder that died: it takes the lease over.
        """
        tier = self._lease_tier
        lease = f"{self._prefix}:#lease:{self.name}:{encode_key(key)}"
        if len(lease) > MAX_KEY_LENGTH:
            lease = hash_long_key(lease)
        token = uuid.uuid4().hex
        deadline = time.monotonic() + LEASE_TTL * 2
        pause = 0.002
        for _attempt in range(10_000):  # bounded; the deadline ends it sooner
            try:
                held = yield (tier, "try_lock", (lease, token, LEASE_TTL))
            except TierError:
                held = True  # no Redis: load without a lease, as a plain cache would
                token = ""
            if held or time.monotonic() >= deadline:
                try:
                    if held and token:
                        # The last holder may have filled L2 just before we got here.
                        value = yield from self._peek(tier, tier_key)
                        if value is not _NOTHING:
                            return value
                    loaded = yield from self._load_source([key], loader)
                    value = loaded.get(key, MISSING)
                    if value is not MISSING:
                        # Fill L2 before releasing, so the waiters find it there.
                        yield from self._fill_lease_tier(tier_key, value)
                    return value
                finally:
                    if token:
                        try:
                            yield (tier, "unlock", (lease, token))
                        except TierError:
                            pass  # it expires
            value = yield from self._peek(tier, tier_key)
            if value is not _NOTHING:
                return value
            yield (_SLEEP, "sleep", (pause,))
            pause = min(pause * 2, 0.02)
        return MISSING  # pragma: no cover - the deadline ends the loop first

    def _peek(self, tier: Any, tier_key: str) -> Plan[Any]:
        """One key's value in ``tier``, MISSING for a cached absence, _NOTHING for none."""
        try:
            answers = yield (tier, "get_many", ([tier_key], self._clock()))
        except TierError:
            return _NOTHING
        answer = answers[0]
        if answer is None or answer is UNDECODABLE:
            return _NOTHING
        raw = answer[0]
        if raw == _NEGATIVE:
            return MISSING
        try:
            return self._serializer.loads(raw)
        except SerializationError:
            return _NOTHING

    def _fill_lease_tier(self, tier_key: str, value: Any) -> Plan[None]:
        t = self._tiers.index(self._lease_tier)
        try:
            data = self._serializer.dumps(value)
        except SerializationError:
            return
        limit = self.config.max_value_bytes
        if limit is not None and len(data) > limit:
            return
        yield from self._tier_call(t, "set_many", ([(tier_key, data, self._fill_ttl(t), len(data))],
                                                   self._clock()))

    def _load_source(
        self, wanted: list[Key], loader: Callable[[list[Key]], Mapping[Key, Any]] | None
    ) -> Plan[Mapping[Key, Any]]:
        source: Any = self.store
        if loader is not None:
            source = loader if hasattr(loader, "load_many") else _LoaderStore(loader)
        started = _perf()
        try:
            loaded = yield (source, "load_many", (wanted,))
        except Exception:
            self.store_stats.errors += 1
            raise
        self.store_stats.latency.add(_perf() - started)
        return loaded  # type: ignore[no-any-return]

    def _entries(
        self,
        tier: Tier,
        tier_keys: Sequence[str],
        fills: list[tuple[int, Any, bytes | None, float | None]],
    ) -> list[TierEntry]:
        """Tier entries for backfill; a value that cannot be cached is left out, logged."""
        entries: list[TierEntry] = []
        limit = self.config.max_value_bytes
        for i, value, data, ttl in fills:
            if data is None:
                try:
                    data = self._serializer.dumps(value)
                except SerializationError as exc:
                    self._warn("uncacheable", f"{self.name}: not caching {tier_keys[i]!r}: {exc}")
                    continue
            if limit is not None and len(data) > limit:
                self._warn("uncacheable", f"{self.name}: not caching {tier_keys[i]!r}: too large")
                continue
            entries.append((tier_keys[i], data if tier.serialized else value, ttl, len(data)))
        return entries
