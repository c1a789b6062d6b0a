"""Read plans: tiers in order, write-back's pending writes, then one fenced, single-flight load."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._types import MISSING, Key
from ..errors import SerializationError, TierError
from ..keys import encode_key
from ..tiers.base import UNDECODABLE, TierEntry
from .common import NEGATIVE, NOTHING, perf
from .failures import Failures
from .ops import Op, Plan, Sleep, WaitFuture, perform
from .state import State
from .views import TierView
from .write import Writer

__all__ = ["FLIGHT_TIMEOUT", "LEASE_TTL", "LoadOp", "Reader"]

LEASE_TTL = 5.0
"""Seconds a process's lease to load a key lasts; a waiter takes over after it."""

FLIGHT_TIMEOUT = 60.0
"""Seconds a caller waits for another caller's load of the same key."""

LoadOp = Callable[[list[Key]], Op[Mapping[Key, Any]]]
"""What loads the keys no tier had: the store's ``load_many``, or a caller's loader."""

_Fills = list[list[tuple[int, Any, bytes | None, float | None]]]


class _Leases:
    """This read's leases on Redis keys: the token, the keys held, the keys served by others."""

    __slots__ = ("held", "served", "skip", "token")

    def __init__(self) -> None:
        self.token = ""
        self.skip = False
        self.held: set[str] = set()
        self.served: set[str] = set()


class Reader:
    """The read path, as plans the sync and async drivers both run.

    Tiers in order, write-back's pending writes, then one fenced,
    single-flight load; the loaded values backfill the tiers above the one
    that answered, through a lease where the tier has them.
    """

    def __init__(self, state: State, failures: Failures, writer: Writer) -> None:
        self.state = state
        self.failures = failures
        self.writer = writer

    def read(
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
        if self.failures.purges:
            # A shared tier is back: drop what it may hold stale before reading it.
            yield from self.failures.replay()
        # Generations before anything is read: a copy put into L1 at the end
        # must not outlive a change that raced this read (see fill_local).
        fence = self.state.fence.snapshot(tier_keys) if self.state.l1_lookup is not None else None
        found: dict[int, Any] = {}
        fills: _Fills = [[] for _ in self.state.tiers]
        failed: set[int] = set()
        pending = yield from self.read_tiers(tier_keys, now, found, fills, start, failed)
        if pending and self.state.store is not None and loader is None:
            fields = [encode_key(keys[i]) for i in pending]
            held = yield from self.state.run.pending(fields, self.writer)
            if held:
                for n, value in held.items():
                    found[pending[n]] = value  # MISSING: a delete not yet flushed
                pending = [i for n, i in enumerate(pending) if n not in held]
        leases = _Leases()
        # A read whose Redis GET just failed takes no lease: a command sent
        # to a stalled server may still run later and block others' fills.
        lease_index = self.state.lease_index
        leases.skip = not lease or (lease_index is not None and lease_index in failed)
        try:
            if pending and (loader is not None or self.state.store is not None):
                yield from self.load(keys, tier_keys, pending, loader, found, fills, leases)
            for t, view in enumerate(self.state.views):
                if not fills[t]:
                    continue
                entries = self.entries(view, tier_keys, fills[t])
                if not entries:
                    continue
                if view.lease is not None and t == lease_index:
                    # Loaded values reach the shared tier only through our
                    # lease: a writer who touched the key since took it away.
                    entries = [e for e in entries if e[0] in leases.held]
                    if entries and leases.token:
                        filled = yield from self.failures.result(
                            t, view.lease.fill_leased(entries, leases.token), "fill_leased"
                        )
                        if filled is not None:
                            leases.held.difference_update(e[0] for e in entries)
                    continue
                if fence is not None and not view.shared:
                    yield from self.writer.fill_local(t, entries, now, fence)
                else:
                    yield from self.failures.set(t, entries, now)
        finally:
            if leases.held and lease_index is not None:
                leasing = self.state.views[lease_index].lease
                assert leasing is not None  # noqa: S101 - narrows the type: lease_index is of a leasing tier
                yield from self.failures.call(
                    lease_index, leasing.release(sorted(leases.held), leases.token), "release"
                )
        return found

    def read_tiers(
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
        views = self.state.views
        if failed is None:
            failed = set()
        for t in range(start, len(views)):
            if not pending:
                break
            view = views[t]
            stats = self.state.tier_stats[t]
            started = perf()
            asked = tier_keys if len(pending) == len(tier_keys) else [tier_keys[i] for i in pending]
            try:
                # Any: the hits are told from None and UNDECODABLE below, by identity.
                answers: list[Any] = yield from perform(view.get_many(asked, now))
            except TierError as exc:
                self.failures.tier_failed(t, "read", exc)
                failed.add(t)
                continue
            stats.latency.add(perf() - started)
            missed: list[int] = []
            if None not in answers and UNDECODABLE not in answers:
                hit_index, hit_answer = pending, answers  # every key hit: the common batch
            else:
                hit_index, hit_answer = [], []
                for i, answer in zip(pending, answers, strict=True):
                    if answer is None:
                        missed.append(i)
                    elif answer is UNDECODABLE:
                        self.failures.undecodable(t, tier_keys[i], "unknown envelope")
                        missed.append(i)
                    else:
                        hit_index.append(i)
                        hit_answer.append(answer)
            serialized = view.serialized
            if serialized:
                values = self.decode_many([a[0] for a in hit_answer], hit_index, tier_keys)
            else:
                values = [a[0] for a in hit_answer]
            hits = len(values)
            if t == 0 and NOTHING not in values:
                # the first tier: nothing to backfill
                found.update(zip(hit_index, values, strict=True))
            else:
                hits = 0
                for i, answer, value in zip(hit_index, hit_answer, values, strict=True):
                    if value is NOTHING:
                        self.failures.undecodable(t, tier_keys[i], "cannot be decoded")
                        missed.append(i)
                        continue
                    hits += 1
                    found[i] = value
                    data = answer[0] if serialized else None
                    for upper in range(t):
                        fills[upper].append((i, value, data, self.state.fill_ttl(upper, answer[1])))
            if hits and missed:
                missed.sort()
            stats.hits += hits
            stats.misses += len(missed)
            pending = missed
        return pending

    def decode_many(
        self, blobs: list[bytes], indices: list[int], all_keys: Sequence[str]
    ) -> list[Any]:
        """Values of a tier's hits; MISSING for a cached absence, NOTHING where undecodable."""
        loads_many = self.state.loads_many
        if loads_many is not None and all(blobs):  # no cached absences: the common case
            try:
                return list(loads_many(blobs))
            except SerializationError:
                pass  # one bad value: decode one by one below, so only it is a miss
        out: list[Any] = []
        for blob, i in zip(blobs, indices, strict=True):
            tier_key = all_keys[i]
            if blob == NEGATIVE:
                out.append(MISSING)
                continue
            try:
                out.append(self.state.decode(blob, tier_key))
            except SerializationError:
                out.append(NOTHING)
        return out

    def load(
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
        fence = self.state.fence.snapshot(wanted)
        lead, follow = self.state.flights.claim(wanted)
        results: dict[str, Any] = {}
        leading = set(lead)
        if lead:
            mine = [i for i in pending if tier_keys[i] in leading]
            error: BaseException | None = None
            try:
                yield from self.load_leading(keys, tier_keys, mine, loader, results, leases)
            except BaseException as exc:
                error = exc
                raise
            finally:
                self.state.flights.land(lead, results, error)
        for key, call in follow.items():
            results[key] = yield WaitFuture(call, FLIGHT_TIMEOUT)
        fresh = dict(zip(wanted, self.state.fence.unchanged(fence, wanted), strict=True))
        negative_ttl = self.state.config.negative_ttl
        for i in pending:
            key = tier_keys[i]
            value = results.get(key, MISSING)
            fill = key in leading and fresh[key] and key not in leases.served
            if value is MISSING:
                self.state.store_stats.misses += 1
                if negative_ttl is not None:
                    found[i] = MISSING
                    if fill:
                        for t in range(len(self.state.tiers)):
                            fills[t].append(
                                (i, MISSING, NEGATIVE, self.state.fill_ttl(t, negative_ttl))
                            )
                continue
            self.state.store_stats.hits += 1
            found[i] = value
            if fill:
                for t in range(len(self.state.tiers)):
                    fills[t].append((i, value, None, self.state.fill_ttl(t)))

    def load_leading(
        self,
        keys: Sequence[Key],
        tier_keys: Sequence[str],
        mine: list[int],
        loader: LoadOp | None,
        results: dict[str, Any],
        leases: _Leases,
    ) -> Plan[None]:
        t = None if leases.skip else self.state.lease_index
        leasing = None if t is None else self.state.views[t].lease
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
                leases.held.update(k for k, ok in zip(wanted, got, strict=True) if ok)
                if len(mine) > 1 or got[0]:
                    break
                # One key, leased by another process: its value will land in Redis.
                value = yield from self.peek(t, wanted[0])
                if value is not NOTHING:
                    results[wanted[0]] = value
                    leases.served.add(wanted[0])
                    return
                if time.monotonic() >= deadline:
                    break  # the holder is gone or slow: load, without filling Redis
                yield Sleep(pause)
                pause = min(pause * 2, 0.02)
            if len(mine) == 1 and wanted[0] in leases.held:
                # The previous holder may have filled Redis just before we got the lease.
                value = yield from self.peek(t, wanted[0])
                if value is not NOTHING:
                    results[wanted[0]] = value
                    leases.served.add(wanted[0])
                    return
        loaded = yield from self.load_source([keys[i] for i in mine], loader)
        for i in mine:
            results[tier_keys[i]] = loaded.get(keys[i], MISSING)

    def peek(self, t: int, tier_key: str) -> Plan[Any]:
        """One key's value in tier ``t``, MISSING for a cached absence, NOTHING for none."""
        try:
            answers: list[Any] = yield from perform(
                self.state.views[t].get_many([tier_key], self.state.clock()))
        except TierError:
            return NOTHING
        answer = answers[0]
        if answer is None or answer is UNDECODABLE:
            return NOTHING
        raw = answer[0]
        if raw == NEGATIVE:
            return MISSING
        try:
            return self.state.decode(raw, tier_key)
        except SerializationError:
            return NOTHING

    def load_source(self, wanted: list[Key], loader: LoadOp | None) -> Plan[Mapping[Key, Any]]:
        if loader is not None:
            op = loader(wanted)
        else:
            assert self.state.store_ops is not None  # noqa: S101 - narrows: loads only with a source
            op = self.state.store_ops.load_many(wanted)
        started = perf()
        try:
            loaded = yield from perform(op)
        except Exception:
            self.state.store_stats.errors += 1
            raise
        self.state.store_stats.latency.add(perf() - started)
        return loaded

    def entries(
        self,
        view: TierView,
        tier_keys: Sequence[str],
        fills: list[tuple[int, Any, bytes | None, float | None]],
    ) -> list[TierEntry]:
        """Tier entries for backfill; a value that cannot be cached is left out, logged."""
        entries: list[TierEntry] = []
        limit = self.state.config.max_value_bytes
        for i, value, data, ttl in fills:
            if data is None:
                try:
                    data = self.state.encode(value, tier_keys[i])
                except SerializationError as exc:
                    self.state.warn(
                        "uncacheable", f"{self.state.name}: not caching {tier_keys[i]!r}: {exc}"
                    )
                    continue
            if limit is not None and len(data) > limit:
                self.state.warn(
                    "uncacheable", f"{self.state.name}: not caching {tier_keys[i]!r}: too large"
                )
                continue
            entries.append((tier_keys[i], data if view.serialized else value, ttl, len(data)))
        return entries
