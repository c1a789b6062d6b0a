"""One namespace's read path and write path, over its tiers and store."""

from __future__ import annotations

import copy as copy_module
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from ._plan import Plan, run
from ._types import MISSING, Clock, Key, seconds
from .errors import (
    ConfigurationError,
    SerializationError,
    StoreError,
    TierError,
    ValueTooLargeError,
)
from .invalidation import Invalidation, Purge
from .flight import Fence, Flights
from .keys import MAX_KEY_LENGTH, encode_key, hash_long_key
from .policies import WriteBatch, WritePolicy, WriteThrough
from .scheduler import Scheduler, ThreadScheduler
from .serialization import MsgpackSerializer, Serializer
from .stats import LayerStats, RateLimitedLog
from .stores.base import Store
from .tiers.base import UNDECODABLE, Tier, TierEntry

__all__ = ["Namespace", "NamespaceConfig"]

log = logging.getLogger("tiercache")

_perf = time.perf_counter
_NEGATIVE = b""  # a cached "the store has no such key": no serializer writes empty bytes

LEASE_TTL = 5.0
"""Seconds a process's lease to load a key lasts; a waiter takes over after it."""

FLIGHT_TIMEOUT = 60.0
"""Seconds a caller waits for another caller's load of the same key."""


@dataclass(frozen=True)
class NamespaceConfig:
    """How one namespace behaves; see :meth:`tiercache.Cache.namespace`."""

    write: WritePolicy = field(default_factory=WriteThrough)
    invalidation: Invalidation = field(default_factory=Purge)
    ttl: float | None = None
    negative_ttl: float | None = None
    max_value_bytes: int | None = None
    serializer: Serializer = field(default_factory=MsgpackSerializer)
    copy: bool = False

    @classmethod
    def build(
        cls,
        *,
        write: WritePolicy | None = None,
        invalidation: Invalidation | None = None,
        ttl: float | timedelta | None = None,
        negative_ttl: float | timedelta | None = None,
        max_value_bytes: int | None = None,
        serializer: Serializer | None = None,
        copy: bool = False,
    ) -> NamespaceConfig:
        """Validate user options into a config.

        Raises:
            ConfigurationError: an option has the wrong type or an impossible value.
        """
        if write is not None and not isinstance(write, WritePolicy):
            raise ConfigurationError(f"write= must be a write policy, got {write!r}")
        if invalidation is not None and not isinstance(invalidation, Invalidation):
            raise ConfigurationError(f"invalidation= must be a strategy, got {invalidation!r}")
        if serializer is not None and not isinstance(serializer, Serializer):
            raise ConfigurationError(f"serializer= must be a Serializer, got {serializer!r}")
        if max_value_bytes is not None and (
            not isinstance(max_value_bytes, int)
            or isinstance(max_value_bytes, bool)
            or max_value_bytes < 1
        ):
            raise ConfigurationError(
                f"max_value_bytes must be a positive int, got {max_value_bytes!r}"
            )
        return cls(
            write=write if write is not None else WriteThrough(),
            invalidation=invalidation if invalidation is not None else Purge(),
            ttl=seconds(ttl),
            negative_ttl=seconds(negative_ttl, "negative_ttl"),
            max_value_bytes=max_value_bytes,
            serializer=serializer if serializer is not None else MsgpackSerializer(),
            copy=bool(copy),
        )


def _min_ttl(*ttls: float | None) -> float | None:
    present = [t for t in ttls if t is not None]
    return min(present) if present else None


class _Sleeper:
    """The pause between lease polls, as a plan step (``asleep`` for AsyncCache)."""

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(seconds)


_SLEEP = _Sleeper()
_NOTHING = object()  # "this tier has nothing for the key", distinct from MISSING


class _LoaderStore:
    """A ``get_many(loader=)`` callable in the shape of a store's ``load_many``."""

    def __init__(self, loader: Callable[[list[Key]], Mapping[Key, Any]]) -> None:
        self._loader = loader

    def load_many(self, keys: list[Key]) -> Mapping[Key, Any]:
        return self._loader(keys)


class Namespace:
    """The read and write paths of one namespace. Get one from ``Cache.namespace()``.

    Reads go L1, L2, ..., then the store, and backfill the layers above the
    one that answered, never with a longer TTL than that layer had left.
    Writes follow the namespace's write policy. Every method validates its
    input before touching any tier or store.
    """

    def __init__(
        self,
        name: str,
        *,
        prefix: str,
        tiers: Sequence[Tier],
        store: Store | None,
        config: NamespaceConfig,
        clock: Clock,
        scheduler: Scheduler | None = None,
        bus: Any = None,
        max_staleness: float = 1.0,
        log_interval: float = 10.0,
    ) -> None:
        self.name = name
        self.tiers = self._tiers = list(tiers)
        self.store = store
        self._clock = clock
        self._scheduler = scheduler if scheduler is not None else ThreadScheduler()
        self._bus = bus
        self._prefix = prefix
        self._base_prefix = f"{prefix}:{name}:"
        self.key_prefix = self._base_prefix
        self._str_prefix = self.key_prefix + "s:"
        # Bookkeeping keys live under "#", which no namespace name can hold,
        # so invalidate_all's SCAN of "prefix:name:*" never touches them.
        self.journal_key = f"{prefix}:#wb:{name}"
        self._version_key = f"{prefix}:#ver:{name}"
        self._version = 0
        self._version_tier: Any = next((t for t in self._tiers if hasattr(t, "bump_version")), None)
        self.tier_stats = [LayerStats() for _ in self._tiers]
        self.store_stats = LayerStats()
        self._quiet = RateLimitedLog(log_interval)
        self.bus_errors = 0
        self._flights = Flights()
        lease_tier = next((t for t in self._tiers if hasattr(t, "try_lock")), None)
        self._lease_tier: Any = lease_tier if store is not None else None
        self._fence = Fence()
        self.max_staleness = max_staleness
        self.has_store = store is not None
        l1 = self._tiers[0] if self._tiers and not self._tiers[0].serialized else None
        self._l1_lookup = getattr(l1, "lookup", None)
        self._l1_stats = self.tier_stats[0] if self._l1_lookup is not None else None
        self._apply(config)
        self._policy.start(self, self._scheduler)

    def _apply(self, config: NamespaceConfig, new_policy: bool = True) -> None:
        self.config = config
        if new_policy:
            # Each namespace runs its own copy: a policy may keep per-namespace state.
            self._policy: WritePolicy = copy_module.copy(config.write)
        self.serializer = self._serializer = config.serializer
        if config.invalidation.versioned:
            self._set_version(self._read_version(), announce=False)
        else:
            self._set_prefix(self._base_prefix)
        strategy_ttl = config.invalidation.ttl
        self._tier_ttls = [_min_ttl(t.ttl, config.ttl, strategy_ttl) for t in self._tiers]
        # A copying namespace answers every read with a fresh object; the
        # plain hot path stays free of the check.
        if config.copy:
            self.get = self._get_copy  # type: ignore[method-assign]
        else:
            self.__dict__.pop("get", None)

    def __repr__(self) -> str:
        return f"Namespace({self.name!r}, tiers={len(self._tiers)}, store={self.store!r})"

    # -- keys and versions --------------------------------------------------

    def _set_prefix(self, key_prefix: str) -> None:
        # One assignment each: a concurrent reader sees the old or the new prefix.
        self.key_prefix = key_prefix
        self._str_prefix = key_prefix + "s:"

    def _read_version(self) -> int:
        tier = self._version_tier
        if tier is None:
            return self._version or 1
        try:
            return int(tier.read_version(self._version_key))
        except TierError as exc:
            self._warn("version", f"{self.name}: cannot read the namespace version: {exc}")
            return self._version or 1

    def _set_version(self, version: int, announce: bool) -> None:
        """Move to ``version`` if it is newer; versions never go backwards."""
        if version <= self._version:
            return
        self._version = version
        self._set_prefix(f"{self._base_prefix}v{version}:")

    def refresh_version(self) -> None:
        """Re-read the namespace version (after a bus gap); only ever moves forward."""
        if self.config.invalidation.versioned:
            self._set_version(self._read_version(), announce=False)

    def on_version(self, version: int) -> None:
        """Another process bumped the namespace version."""
        if self.config.invalidation.versioned:
            self._set_version(version, announce=False)

    # -- the bus: other processes' changes -----------------------------------

    def on_invalidation(self, kind: str, keys: list[str]) -> None:
        """Apply another process's change to our L1 (called by the bus listener)."""
        if self._l1_lookup is None:
            return
        l1 = self._tiers[0]
        self._touch(kind, keys)
        if kind == "keys":
            l1.delete_many(keys)
        elif kind == "all":
            l1.delete_prefix(self._base_prefix)
        elif kind == "version" and keys:
            self.on_version(int(keys[0]))

    def on_gap(self) -> None:
        """Invalidations may have been missed: drop our L1 copies, re-read the version."""
        self._fence.bump_all()
        if self.config.invalidation.broadcast and self._l1_lookup is not None:
            self._tiers[0].delete_prefix(self._base_prefix)
        self.refresh_version()

    # -- keys ---------------------------------------------------------------

    def tier_key(self, key: Key) -> str:
        """The full key of ``key`` in every tier (``prefix:namespace:canonical``).

        Raises:
            InvalidKeyError: ``key`` is not a supported key type.
        """
        if type(key) is str:
            return self._str_prefix + key
        return self.key_prefix + encode_key(key)

    # -- reads --------------------------------------------------------------

    def get(self, key: Key, default: Any = None) -> Any:
        """Return the value of ``key`` from the first layer that has it.

        On a miss in every tier the store is asked (when there is one) and
        the tiers are filled. Returns ``default`` (``None`` unless given; pass
        ``tiercache.MISSING`` to tell absence from a cached ``None``) when no
        layer has the key. Tier failures are counted and read around.

        Raises:
            InvalidKeyError: ``key`` is not a supported key type.
            StoreError: the store failed to load.
        """
        lookup = self._l1_lookup
        if lookup is not None and type(key) is str:
            try:
                value, expires_at, _ = lookup(self._str_prefix + key)
            except KeyError:
                pass
            else:
                if expires_at > self._clock():
                    self._l1_stats.hits += 1  # type: ignore[union-attr]
                    return default if value is MISSING else value
        return self._get_slow(key, default)

    def _get_copy(self, key: Key, default: Any = None) -> Any:
        value = Namespace.get(self, key, MISSING)
        return default if value is MISSING else copy_module.deepcopy(value)

    def _get_slow(self, key: Key, default: Any) -> Any:
        tier_key = self.tier_key(key)
        found = run(self._read([key], [tier_key], self._clock(), None))
        value = found.get(0, MISSING)
        return default if value is MISSING else value

    def get_many(
        self,
        keys: Iterable[Key],
        *,
        loader: Callable[[list[Key]], Mapping[Key, Any]] | None = None,
    ) -> dict[Key, Any]:
        """Return ``{key: value}`` for the keys found (a cached ``None`` included).

        One round trip per tier for the whole batch; the keys no tier has are
        asked of ``loader`` (called once with just those keys, and its answer
        cached) or else of the store, in one ``load_many``.

        Raises:
            InvalidKeyError: a key is not a supported key type (nothing is read).
            StoreError: the store (or ``loader``) failed.
        """
        keys = list(dict.fromkeys(keys))
        tier_keys = [self.tier_key(k) for k in keys]
        found = run(self._read(keys, tier_keys, self._clock(), loader))
        copying = self.config.copy
        return {
            keys[i]: copy_module.deepcopy(v) if copying else v
            for i, v in sorted(found.items())
            if v is not MISSING
        }

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
        source: Any = _LoaderStore(loader) if loader is not None else self.store
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

    # -- writes -------------------------------------------------------------

    def set(self, key: Key, value: Any) -> None:
        """Write one value, following the namespace's write policy.

        Raises:
            InvalidKeyError: ``key`` is not a supported key type.
            SerializationError: the value cannot be serialized (nothing is written).
            ValueTooLargeError: the value is over ``max_value_bytes`` (nothing is written).
            StoreError: the store refused the write.
        """
        self.set_many({key: value})

    def set_many(self, items: Mapping[Key, Any]) -> None:
        """Write several values: one store batch and one round trip per tier.

        Every key and value is validated and serialized first, so a bad one
        leaves every tier and the store untouched.

        Raises:
            InvalidKeyError, SerializationError, ValueTooLargeError, StoreError: as :meth:`set`.
        """
        batch = self._prepare(items)
        if batch.keys:
            run(self._announced(self._policy.write(batch, self), "keys", batch.tier_keys))

    def _prepare(self, items: Mapping[Key, Any]) -> WriteBatch:
        if not isinstance(items, Mapping):
            raise ConfigurationError(f"set_many takes a mapping, not {type(items).__name__}")
        keys = list(items)
        tier_keys = [self.tier_key(k) for k in keys]
        values = [items[k] for k in keys]
        dumps = self._serializer.dumps
        data = [dumps(v) for v in values]
        limit = self.config.max_value_bytes
        if limit is not None:
            for key, blob in zip(keys, data):
                if len(blob) > limit:
                    raise ValueTooLargeError(
                        f"{self.name}: value of {key!r} is {len(blob)} bytes serialized, "
                        f"over max_value_bytes={limit}"
                    )
        return WriteBatch(keys, tier_keys, values, data, self._clock())

    def delete(self, key: Key) -> None:
        """Delete ``key`` from the store and from every tier, in every process.

        Raises:
            InvalidKeyError: ``key`` is not a supported key type.
            StoreError: the store refused the delete (the tiers are untouched).
        """
        self.delete_many([key])

    def delete_many(self, keys: Iterable[Key]) -> None:
        """Delete several keys from the store and from every tier."""
        keys = list(dict.fromkeys(keys))
        tier_keys = [self.tier_key(k) for k in keys]
        if keys:
            run(self._announced(self._policy.delete(keys, tier_keys, self), "keys", tier_keys))

    def invalidate(self, key: Key) -> None:
        """Drop the cached copies of ``key`` in every tier and process; the store is untouched.

        Raises:
            InvalidKeyError: ``key`` is not a supported key type.
        """
        self.invalidate_many([key])

    def invalidate_many(self, keys: Iterable[Key]) -> None:
        """Drop the cached copies of several keys in every tier and process."""
        keys = list(dict.fromkeys(keys))
        tier_keys = [self.tier_key(k) for k in keys]
        if keys:
            run(self._announced(self.drop(tier_keys), "keys", tier_keys))

    def invalidate_all(self) -> None:
        """Drop every cached copy in this namespace, in every tier and process.

        Under Versioned this bumps the namespace version: O(1), whatever the
        namespace's size. Otherwise each tier removes the namespace's keys
        (Redis by SCAN and UNLINK in batches, never KEYS).
        """
        if self.config.invalidation.versioned:
            run(self._bump_version())
        else:
            run(self._announced(self._drop_all(), "all", ()))

    def _drop_all(self) -> Plan[None]:
        for t in range(len(self._tiers)):
            yield from self._tier_call(t, "delete_prefix", (self._base_prefix,))

    def _bump_version(self) -> Plan[None]:
        old_prefix = self.key_prefix
        tier = self._version_tier
        version = self._version + 1
        if tier is not None:
            try:
                version = yield (tier, "bump_version", (self._version_key,))
            except TierError as exc:
                # Redis unreachable: drop what we can reach, as Purge would.
                self._warn("version", f"{self.name}: version bump failed, purging: {exc}")
                yield from self._drop_all()
                return
        self._set_version(int(version), announce=True)
        if self._l1_lookup is not None:
            # Old copies are unreachable already; free the memory they hold.
            yield from self._tier_call(0, "delete_prefix", (old_prefix,))
        yield from self._publish("version", [str(version)])

    def _announced(self, plan: Plan[None], kind: str, tier_keys: Sequence[str]) -> Plan[None]:
        """Run a change, then tell the other processes (Purge and Versioned).

        The fence is bumped before and after, so a read that loaded while
        the change ran does not fill the tiers with what it loaded.
        """
        self._touch(kind, tier_keys)
        try:
            yield from plan
        finally:
            self._touch(kind, tier_keys)
        yield from self._publish(kind, tier_keys)

    def _touch(self, kind: str, tier_keys: Sequence[str]) -> None:
        if kind == "keys":
            self._fence.bump(tier_keys)
        else:
            self._fence.bump_all()

    def _publish(self, kind: str, tier_keys: Sequence[str]) -> Plan[None]:
        if self._bus is None or not self.config.invalidation.broadcast:
            return
        try:
            yield (self._bus, "publish", (self.name, kind, list(tier_keys)))
        except TierError as exc:
            self.bus_errors += 1
            self._warn("bus", f"{self.name}: invalidation not announced: {exc}")

    def flush(self, timeout: float = 5.0) -> None:
        """Write what the write policy holds back (nothing under WriteThrough).

        Waits up to ``timeout`` seconds while another process is flushing
        this namespace's shared journal.

        Raises:
            StoreError: the store failed; the entries stay pending for a retry.
        """
        deadline = time.monotonic() + timeout
        while True:
            busy, failed = run(self._policy.flush(self)) or (False, 0)
            if failed:
                raise StoreError(
                    f"{self.name}: {failed} write-back entries could not be written "
                    "to the store; they stay pending and are retried"
                )
            if not busy or time.monotonic() >= deadline:
                return
            time.sleep(0.02)

    def dead_letters(self) -> dict[Key, Any]:
        """Write-back entries given up on after repeated store failures.

        ``{key: value}``, with ``MISSING`` for a delete; empty for policies
        that never defer writes.
        """
        plan = getattr(self._policy, "dead_letters", None)
        return {} if plan is None else dict(run(plan(self)))

    def replay_dead_letters(self) -> int:
        """Queue the dead letters for writing again; returns how many were queued."""
        plan = getattr(self._policy, "replay_dead_letters", None)
        return 0 if plan is None else int(run(plan(self)))

    def configure(
        self,
        *,
        write: WritePolicy | None = None,
        invalidation: Invalidation | None = None,
    ) -> None:
        """Swap the write policy or invalidation strategy at run time.

        Pending writes of the old policy are flushed first, and a new
        invalidation strategy starts from an empty L1 for this namespace, so
        no read during or after the swap returns a value older than the
        store's.

        Raises:
            ConfigurationError: an argument is not a policy or strategy.
            StoreError: pending write-back entries could not be flushed (nothing changed).
        """
        checked = NamespaceConfig.build(write=write, invalidation=invalidation)
        changes: dict[str, Any] = {}
        if write is not None:
            changes["write"] = checked.write
        if invalidation is not None:
            changes["invalidation"] = checked.invalidation
        if not changes:
            return
        old_policy = self._policy
        self.flush()  # raises, and changes nothing, if pending writes cannot be written
        self._apply(replace(self.config, **changes), new_policy="write" in changes)
        if "invalidation" in changes and self._l1_lookup is not None:
            run(self._tier_call(0, "delete_prefix", (self._base_prefix,)))
        if self._policy is not old_policy:
            old_policy.close()
            self._policy.start(self, self._scheduler)

    def close(self) -> None:
        """Flush and stop the write policy's background work."""
        try:
            self.flush()
        finally:
            self._policy.close()

    def stats(self) -> dict[str, Any]:
        """Per-layer counters and latency of this namespace."""
        out: dict[str, Any] = {
            "tiers": {
                f"L{t + 1}:{tier.name}": self.tier_stats[t].snapshot()
                for t, tier in enumerate(self._tiers)
            },
            "store": self.store_stats.snapshot() if self.store is not None else None,
            "bus_errors": self.bus_errors,
        }
        counters = getattr(self._policy, "counters", None)
        if counters is not None:
            out["write_back"] = counters()
        return out

    # -- the Target protocol: sub-plans the write policies compose ----------

    def save(self, items: dict[Key, Any]) -> Plan[None]:
        started = _perf()
        try:
            yield (self.store, "save_many", (items,))
        except Exception:
            self.store_stats.errors += 1
            raise
        self.store_stats.latency.add(_perf() - started)
        self.store_stats.sets += len(items)

    def erase(self, keys: Sequence[Key]) -> Plan[None]:
        try:
            yield (self.store, "delete_many", (list(keys),))
        except Exception:
            self.store_stats.errors += 1
            raise
        self.store_stats.deletes += len(keys)

    def entries(self, batch: WriteBatch, t: int) -> list[TierEntry]:
        """Tier ``t``'s entries for the batch's values."""
        tier = self._tiers[t]
        ttl = self._fill_ttl(t)
        return [
            (k, blob if tier.serialized else value, ttl, len(blob))
            for k, value, blob in zip(batch.tier_keys, batch.values, batch.data)
        ]

    def fill(self, batch: WriteBatch, skip: int | None = None) -> Plan[None]:
        for t in range(len(self._tiers)):
            if t == skip:
                self.tier_stats[t].sets += len(batch.keys)
                continue
            entries = self.entries(batch, t)
            if (yield from self._tier_call(t, "set_many", (entries, batch.now))):
                self.tier_stats[t].sets += len(entries)

    def drop(self, tier_keys: Sequence[str]) -> Plan[None]:
        for t in range(len(self._tiers)):
            if (yield from self._tier_call(t, "delete_many", (list(tier_keys),))):
                self.tier_stats[t].deletes += len(tier_keys)

    def _fill_ttl(self, t: int, ttl: float | None = None) -> float | None:
        """The TTL of a copy written into tier ``t``; short while the bus is deaf."""
        ttl = _min_ttl(self._tier_ttls[t], ttl)
        bus = self._bus
        if bus is not None and not self._tiers[t].serialized and not bus.healthy:
            # Invalidations may not reach us: keep L1 copies no older than this.
            ttl = _min_ttl(ttl, self.max_staleness)
        return ttl

    # -- failure handling ---------------------------------------------------

    def _tier_call(self, t: int, method: str, args: tuple[Any, ...]) -> Plan[bool]:
        """One tier operation; a tier failure is counted, logged and read around."""
        try:
            yield (self._tiers[t], method, args)
        except TierError as exc:
            self._tier_failed(t, method, exc)
            return False
        return True

    def _tier_failed(self, t: int, what: str, exc: TierError) -> None:
        self.tier_stats[t].errors += 1
        self._warn(f"tier{t}", f"{self.name}: tier L{t + 1} {what} failed, degrading: {exc}")

    def _undecodable(self, t: int, tier_key: str, why: str) -> None:
        self.tier_stats[t].undecodable += 1
        self._warn(f"undecodable{t}", f"{self.name}: undecodable bytes at {tier_key!r} "
                   f"in L{t + 1} treated as a miss: {why}")

    def _warn(self, topic: str, message: str) -> None:
        suppressed = self._quiet.should_log(topic, time.monotonic())
        if suppressed is not None:
            extra = f" ({suppressed} similar suppressed)" if suppressed else ""
            log.warning("%s%s", message, extra)
