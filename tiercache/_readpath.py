"""The read path: tiers in order, write-back's pending writes, then one fenced, single-flight load."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from ._core import (
    _NEGATIVE,
    _NOTHING,
    FLIGHT_TIMEOUT,
    LEASE_TTL,
    LoadOp,
    NamespaceCore,
    _perf,
)
from ._engine.ops import Plan, Sleep, WaitFuture, perform
from ._engine.views import TierView
from ._types import MISSING, Key
from .errors import SerializationError, TierError
from .keys import encode_key
from .tiers.base import UNDECODABLE, TierEntry

__all__ = ["ReadPath"]

_Fills = list[list[tuple[int, Any, bytes | None, float | None]]]


class _Leases:
    """This read's leases on Redis keys: the token, the keys held, the keys served by others."""

    __slots__ = ("held", "served", "skip", "token")

    def __init__(self) -> None:
        self.token = ""
        self.skip = False
        self.held: set[str] = set()
        self.served: set[str] = set()


class ReadPath(NamespaceCore):
    """The read path, as plans the sync and async drivers both run."""

    def _read(
        self,
        keys: Sequence[Key],
        tier_keys: Sequence[str],
        now: float,
        loader: LoadOp | None,
        start: int = 0,
        lease: bool = True,
    ) -> Plan[dict[int, Any]]:
        """The read path for a batch: ``{index: value}``, MISSING for a cached absence.

        ``start``: the first tier to ask (the tiers above it were asked already
        by ``Namespace.get``'s direct path, and missed). ``lease``: False when
        that direct read of Redis just failed.
        """
        if self._purges:
            # A shared tier is back: drop what it may hold stale before reading it.
            yield from self._replay_purges()
        # Generations before anything is read: a copy put into L1 at the end
        # must not outlive a change that raced this read (see fill_local).
        fence = self._fence.snapshot(tier_keys) if self._l1_lookup is not None else None
        found: dict[int, Any] = {}
        fills: _Fills = [[] for _ in self._tiers]
        failed: set[int] = set()
        pending = yield from self._read_tiers(tier_keys, now, found, fills, start, failed)
        if pending and self.store is not None and loader is None:
            fields = [encode_key(keys[i]) for i in pending]
            held = yield from self._policy.pending(fields, self)
            if held:
                for n, value in held.items():
                    found[pending[n]] = value  # MISSING: a delete not yet flushed
                pending = [i for n, i in enumerate(pending) if n not in held]
        leases = _Leases()
        # A read whose Redis GET just failed takes no lease: a command sent
        # to a stalled server may still run later and block others' fills.
        lease_index = self._lease_index
        leases.skip = not lease or (lease_index is not None and lease_index in failed)
        try:
            if pending and (loader is not None or self.store is not None):
                yield from self._load(keys, tier_keys, pending, loader, found, fills, leases)
            for t, view in enumerate(self._views):
                if not fills[t]:
                    continue
                entries = self._entries(view, tier_keys, fills[t])
                if not entries:
                    continue
                if view.lease is not None and t == lease_index:
                    # Loaded values reach the shared tier only through our
                    # lease: a writer who touched the key since took it away.
                    entries = [e for e in entries if e[0] in leases.held]
                    if entries and leases.token:
                        filled = yield from self._tier_result(
                            t, view.lease.fill_leased(entries, leases.token), "fill_leased"
                        )
                        if filled is not None:
                            leases.held.difference_update(e[0] for e in entries)
                    continue
                if fence is not None and not view.shared:
                    yield from self.fill_local(t, entries, now, fence)
                else:
                    yield from self._tier_set(t, entries, now)
        finally:
            if leases.held and lease_index is not None:
                leasing = self._views[lease_index].lease
                assert leasing is not None  # the index is of a leasing tier
                yield from self._tier_call(
                    lease_index, leasing.release(sorted(leases.held), leases.token), "release"
                )
        return found

    def _read_tiers(
        self,
        tier_keys: Sequence[str],
        now: float,
        found: dict[int, Any],
        fills: _Fills,
        start: int = 0,
        failed: set[int] | None = None,
    ) -> Plan[list[int]]:
        """Ask each tier in turn for what is still missing; returns the indices no tier had.

        Per tier: one round trip, one batch decode, one update of each counter.
        """
        pending = list(range(len(tier_keys)))
        views = self._views
        if failed is None:
            failed = set()
        for t in range(start, len(views)):
            if not pending:
                break
            view = views[t]
            stats = self.tier_stats[t]
            started = _perf()
            asked = tier_keys if len(pending) == len(tier_keys) else [tier_keys[i] for i in pending]
            try:
                # Any: the hits are told from None and UNDECODABLE below, by identity.
                answers: list[Any] = yield from perform(view.get_many(asked, now))
            except TierError as exc:
                self._tier_failed(t, "read", exc)
                failed.add(t)
                continue
            stats.latency.add(_perf() - started)
            missed: list[int] = []
            if None not in answers and UNDECODABLE not in answers:
                hit_index, hit_answer = pending, answers  # every key hit: the common batch
            else:
                hit_index, hit_answer = [], []
                for i, answer in zip(pending, answers):
                    if answer is None:
                        missed.append(i)
                    elif answer is UNDECODABLE:
                        self._undecodable(t, tier_keys[i], "unknown envelope")
                        missed.append(i)
                    else:
                        hit_index.append(i)
                        hit_answer.append(answer)
            serialized = view.serialized
            if serialized:
                values = self._decode_many([a[0] for a in hit_answer], hit_index, tier_keys)
            else:
                values = [a[0] for a in hit_answer]
            hits = len(values)
            if t == 0 and _NOTHING not in values:
                found.update(zip(hit_index, values))  # the first tier: nothing to backfill
            else:
                hits = 0
                for i, answer, value in zip(hit_index, hit_answer, values):
                    if value is _NOTHING:
                        self._undecodable(t, tier_keys[i], "cannot be decoded")
                        missed.append(i)
                        continue
                    hits += 1
                    found[i] = value
                    data = answer[0] if serialized else None
                    for upper in range(t):
                        fills[upper].append((i, value, data, self._fill_ttl(upper, answer[1])))
            if hits and missed:
                missed.sort()
            stats.hits += hits
            stats.misses += len(missed)
            pending = missed
        return pending

    def _decode_many(
        self, blobs: list[bytes], indices: list[int], all_keys: Sequence[str]
    ) -> list[Any]:
        """Values of a tier's hits; MISSING for a cached absence, _NOTHING where undecodable."""
        loads_many = self._loads_many
        if loads_many is not None and all(blobs):  # no cached absences: the common case
            try:
                return list(loads_many(blobs))
            except SerializationError:
                pass  # one bad value: decode one by one below, so only it is a miss
        out: list[Any] = []
        for blob, i in zip(blobs, indices):
            tier_key = all_keys[i]
            if blob == _NEGATIVE:
                out.append(MISSING)
                continue
            try:
                out.append(self.decode(blob, tier_key))
            except SerializationError:
                out.append(_NOTHING)
        return out

    def _load(
        self,
        keys: Sequence[Key],
        tier_keys: Sequence[str],
        pending: list[int],
        loader: LoadOp | None,
        found: dict[int, Any],
        fills: _Fills,
        leases: _Leases,
    ) -> Plan[None]:
        """Load what no tier had: one load per key, fenced fills.

        In this process the first caller to miss a key leads and loads it;
        concurrent callers wait for its result. With a Redis tier the leader
        also takes a lease per key (memcache's idea): only a lease holder may
        fill Redis, and a write or invalidation of the key in any process
        takes the lease away, so a load that raced a write never puts the
        older value back. A single-key miss whose lease another process holds
        waits for that process's value instead of loading it again. L1 fills
        are fenced the same way by this process's own generation counters.
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
                yield from self._load_leading(keys, tier_keys, mine, loader, results, leases)
            except BaseException as exc:
                error = exc
                raise
            finally:
                self._flights.land(lead, results, error)
        for key, call in follow.items():
            results[key] = yield WaitFuture(call, FLIGHT_TIMEOUT)
        fresh = dict(zip(wanted, self._fence.unchanged(fence, wanted)))
        negative_ttl = self.config.negative_ttl
        for i in pending:
            key = tier_keys[i]
            value = results.get(key, MISSING)
            fill = key in leading and fresh[key] and key not in leases.served
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

    def _load_leading(
        self,
        keys: Sequence[Key],
        tier_keys: Sequence[str],
        mine: list[int],
        loader: LoadOp | None,
        results: dict[str, Any],
        leases: _Leases,
    ) -> Plan[None]:
        t = None if leases.skip else self._lease_index
        leasing = None if t is None else self._views[t].lease
        if t is not None and leasing is not None:
            leases.token = uuid.uuid4().hex
            wanted = [tier_keys[i] for i in mine]
            deadline = time.monotonic() + LEASE_TTL * 2
            pause = 0.002
            for _attempt in range(10_000):  # bounded; the deadline ends it sooner
                try:
                    got = yield from perform(leasing.lease_many(wanted, leases.token, LEASE_TTL))
                except TierError:
                    leases.token = ""  # Redis is away: load, and fill only L1
                    break
                leases.held.update(k for k, ok in zip(wanted, got) if ok)
                if len(mine) > 1 or got[0]:
                    break
                # One key, leased by another process: its value will land in Redis.
                value = yield from self._peek(t, wanted[0])
                if value is not _NOTHING:
                    results[wanted[0]] = value
                    leases.served.add(wanted[0])
                    return
                if time.monotonic() >= deadline:
                    break  # the holder is gone or slow: load, without filling Redis
                yield Sleep(pause)
                pause = min(pause * 2, 0.02)
            if len(mine) == 1 and wanted[0] in leases.held:
                # The previous holder may have filled Redis just before we got the lease.
                value = yield from self._peek(t, wanted[0])
                if value is not _NOTHING:
                    results[wanted[0]] = value
                    leases.served.add(wanted[0])
                    return
        loaded = yield from self._load_source([keys[i] for i in mine], loader)
        for i in mine:
            results[tier_keys[i]] = loaded.get(keys[i], MISSING)

    def _peek(self, t: int, tier_key: str) -> Plan[Any]:
        """One key's value in tier ``t``, MISSING for a cached absence, _NOTHING for none."""
        try:
            answers: list[Any] = yield from perform(
                self._views[t].get_many([tier_key], self._clock()))
        except TierError:
            return _NOTHING
        answer = answers[0]
        if answer is None or answer is UNDECODABLE:
            return _NOTHING
        raw = answer[0]
        if raw == _NEGATIVE:
            return MISSING
        try:
            return self.decode(raw, tier_key)
        except SerializationError:
            return _NOTHING

    def _load_source(self, wanted: list[Key], loader: LoadOp | None) -> Plan[Mapping[Key, Any]]:
        if loader is not None:
            op = loader(wanted)
        else:
            assert self._store_ops is not None  # the read path loads only with a source
            op = self._store_ops.load_many(wanted)
        started = _perf()
        try:
            loaded = yield from perform(op)
        except Exception:
            self.store_stats.errors += 1
            raise
        self.store_stats.latency.add(_perf() - started)
        return loaded

    def _entries(
        self,
        view: TierView,
        tier_keys: Sequence[str],
        fills: list[tuple[int, Any, bytes | None, float | None]],
    ) -> list[TierEntry]:
        """Tier entries for backfill; a value that cannot be cached is left out, logged."""
        entries: list[TierEntry] = []
        limit = self.config.max_value_bytes
        for i, value, data, ttl in fills:
            if data is None:
                try:
                    data = self.encode(value, tier_keys[i])
                except SerializationError as exc:
                    self._warn("uncacheable", f"{self.name}: not caching {tier_keys[i]!r}: {exc}")
                    continue
            if limit is not None and len(data) > limit:
                self._warn("uncacheable", f"{self.name}: not caching {tier_keys[i]!r}: too large")
                continue
            entries.append((tier_keys[i], data if view.serialized else value, ttl, len(data)))
        return entries
