"""A namespace's state and the steps both paths compose: keys, versions, fences, tier calls."""

from __future__ import annotations

import copy as copy_module
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol, runtime_checkable

from ._engine.ops import Blocking, Op, Plan, perform, run
from ._engine.views import StoreOps, TierView
from ._types import Clock, Key, seconds
from .errors import (
    ConfigurationError,
    TierError,
)
from .flight import Fence, Flights
from .invalidation import Invalidation, Purge
from .keys import encode_key
from .policies import WriteBatch, WritePolicy, WriteThrough
from .scheduler import Scheduler, ThreadScheduler
from .serialization import MsgpackSerializer, Serializer
from .stats import LayerStats, RateLimitedLog
from .stores.base import Store
from .tiers.base import Tier, TierEntry, Versioning

__all__ = ["NamespaceConfig", "NamespaceCore"]

log = logging.getLogger("tiercache")

_perf = time.perf_counter
_NEGATIVE = b""  # a cached "the store has no such key": no serializer writes empty bytes

LEASE_TTL = 5.0
"""Seconds a process's lease to load a key lasts; a waiter takes over after it."""

MAX_REMEMBERED_PURGES = 100_000
"""Keys a namespace remembers to purge from a tier that is away; past it, all of them."""

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
    ttl_jitter: float = 0.0

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
        ttl_jitter: float | None = None,
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
            ttl_jitter=_fraction(ttl_jitter),
        )


def _fraction(value: float | None) -> float:
    if value is None:
        return 0.0
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
        raise ConfigurationError(f"ttl_jitter must be a fraction in [0, 1), got {value!r}")
    return float(value)


def _min_ttl(*ttls: float | None) -> float | None:
    present = [t for t in ttls if t is not None]
    return min(present) if present else None


_NOTHING = object()  # "this tier has nothing for the key", distinct from MISSING

LoadOp = Callable[[list[Key]], Op[Mapping[Key, Any]]]
"""What loads the keys no tier had: the store's ``load_many``, or a caller's loader."""


@runtime_checkable
class BoundSerializer(Protocol):
    """A serializer that binds each value to its namespace and key (signed pickle)."""

    def dumps_for(self, value: Any, context: bytes) -> bytes: ...

    def loads_for(self, data: bytes, context: bytes) -> Any: ...

class NamespaceCore:
    """State of one namespace and the plan steps its read and write paths share.

    Also the ``Target`` that write policies act on (``save``, ``erase``,
    ``entries``, ``fill``, ``drop``). Public behaviour is in
    :class:`tiercache.namespace.Namespace`.
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
        on_tier_error: str = "degrade",
        wall_clock: Clock = time.time,
        log_interval: float = 10.0,
    ) -> None:
        self.name = name
        self._base_tiers = list(tiers)
        self.tiers = self._tiers = self._base_tiers
        # Capabilities are checked here, once: the paths read the views.
        self._base_views = [TierView(t) for t in self._base_tiers]
        self._views = self._base_views
        self.store = store
        self._store_ops = StoreOps(store) if store is not None else None
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
        self.tier_stats = [LayerStats() for _ in self._tiers]
        self.store_stats = LayerStats()
        self._quiet = RateLimitedLog(log_interval)
        self.bus_errors = 0
        self._purges: dict[int, set[str] | None] = {}
        self._purge_lock = threading.Lock()
        self.purges_replayed = 0
        self._flights = Flights()
        self._fence = Fence()
        self.max_staleness = max_staleness
        self.on_tier_error = on_tier_error
        self.wall_clock = wall_clock
        self.has_store = store is not None
        self._l1_lookup = self._base_views[0].lookup if self._base_views else None
        self._l1_stats = self.tier_stats[0] if self._l1_lookup is not None else None
        self._apply(config)
        self._policy.start(self, self._scheduler)

    def _apply(self, config: NamespaceConfig, new_policy: bool = True) -> None:
        self.config = config
        # Under Versioned a shared tier is used through its per-key-version
        # face (RedisTier.keyed_versions): every copy carries its key's version.
        versioned = config.invalidation.versioned
        self.tiers = self._tiers = [
            t.keyed_versions() if versioned and isinstance(t, Versioning) else t
            for t in self._base_tiers
        ]
        self._views = [
            view if tier is view.tier else TierView(tier)
            for tier, view in zip(self._tiers, self._base_views)
        ]
        self._version_view = next((v for v in self._views if v.versions is not None), None)
        self._lease_index: int | None = next(
            (t for t, v in enumerate(self._views) if v.lease is not None), None)
        if new_policy:
            # Each namespace runs its own copy: a policy may keep per-namespace state.
            self._policy: WritePolicy = copy_module.copy(config.write)
        self.serializer = self._serializer = config.serializer
        # Serializers that sign (pickle) bind each value to its namespace and key.
        self._bound = isinstance(config.serializer, BoundSerializer)
        loads_many = getattr(config.serializer, "loads_many", None)  # optional, read once
        self._loads_many: Callable[[list[bytes]], list[Any]] | None = (
            None if self._bound else loads_many)
        if config.invalidation.versioned:
            self._set_version(self._read_version(), announce=False)
        else:
            self._set_prefix(self._base_prefix)
        strategy_ttl = config.invalidation.ttl
        self._tier_ttls = [_min_ttl(t.ttl, config.ttl, strategy_ttl) for t in self._tiers]

    @property
    def views(self) -> list[TierView]:
        """The Target protocol's: each tier's operations and capabilities, as configured."""
        return self._views

    def __repr__(self) -> str:
        return f"Namespace({self.name!r}, tiers={len(self._tiers)}, store={self.store!r})"

    # -- keys and versions --------------------------------------------------

    def _set_prefix(self, key_prefix: str) -> None:
        # One assignment each: a concurrent reader sees the old or the new prefix.
        self.key_prefix = key_prefix
        self._str_prefix = key_prefix + "s:"
        self._int_prefix = key_prefix + "i:"

    def _read_version(self) -> int:
        view = self._version_view
        if view is None or view.versions is None:
            return self._version or 1
        try:
            return int(view.versions.read_now(self._version_key))
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
        self.replay_purges_now()
        if self.config.invalidation.broadcast and self._l1_lookup is not None:
            self._tiers[0].delete_prefix(self._base_prefix)
        self.refresh_version()

    # -- keys ---------------------------------------------------------------

    def _context(self, tier_key: str) -> bytes:
        """``namespace:canonical key`` of a tier key, whatever version it is under."""
        rest = tier_key[len(self._base_prefix):]
        if self.config.invalidation.versioned and rest.startswith("v"):
            rest = rest.split(":", 1)[1]
        return f"{self.name}:{rest}".encode("utf-8", "surrogatepass")

    def encode(self, value: Any, tier_key: str) -> bytes:
        """Serialize ``value`` as stored under ``tier_key``."""
        if self._bound:
            return self._serializer.dumps_for(value, self._context(tier_key))  # type: ignore[attr-defined,no-any-return]
        return self._serializer.dumps(value)

    def decode(self, data: bytes, tier_key: str) -> Any:
        """Deserialize bytes stored under ``tier_key``; SerializationError if they are not ours."""
        if self._bound:
            return self._serializer.loads_for(data, self._context(tier_key))  # type: ignore[attr-defined]
        return self._serializer.loads(data)

    def decode_field(self, data: bytes, field: str) -> Any:
        """Deserialize a write-back journal payload of the canonical key ``field``."""
        if self._bound:
            context = f"{self.name}:{field}".encode("utf-8", "surrogatepass")
            return self._serializer.loads_for(data, context)  # type: ignore[attr-defined]
        return self._serializer.loads(data)

    def tier_key(self, key: Key) -> str:
        """The full key of ``key`` in every tier (``prefix:namespace:canonical``).

        Raises:
            InvalidKeyError: ``key`` is not a supported key type.
        """
        if type(key) is str and key.isascii():
            return self._str_prefix + key
        return self.key_prefix + encode_key(key)

    # -- changes: fences, announcements, whole-namespace drops ---------------

    def _drop_all(self) -> Plan[None]:
        for t in range(len(self._tiers)):
            yield from self._tier_delete_prefix(t)

    def _bump_version(self) -> Plan[None]:
        view = self._version_view
        version = self._version + 1
        if view is not None and view.versions is not None:
            try:
                version = yield from perform(view.versions.bump(self._version_key))
            except TierError as exc:
                # Redis unreachable: drop what we can reach, as Purge would.
                self._warn("version", f"{self.name}: version bump failed, purging: {exc}")
                yield from self._drop_all()
                return
        self._set_version(int(version), announce=True)
        # Old copies, in L1 too, are unreachable now and leave by LRU or TTL:
        # sweeping L1 here would make invalidate_all O(L1 size), not O(1).
        yield from self._publish("version", [str(version)])

    def _announced(self, plan: Plan[None], kind: str, tier_keys: Sequence[str]) -> Plan[None]:
        """Run a change, then tell the other processes (Purge and Versioned).

        The fence is bumped before and after, so a read that loaded while
        the change ran does not fill the tiers with what it loaded.
        """
        if self._purges:
            yield from self._replay_purges()
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

    def announcement(self, t: int, tier_keys: Sequence[str]) -> tuple[str, bytes, int] | None:
        """The Target protocol's: the bus entry for tier ``t``'s script, if the bus is on it."""
        bus = self._bus
        if bus is None or not self.config.invalidation.broadcast:
            return None
        shared = self._base_views[t].shared_tier
        if shared is None or shared.client is not bus.client:
            return None  # the bus's stream is on another server
        entry: tuple[str, bytes, int] = bus.entry(self.name, "keys", list(tier_keys))
        return entry

    def _publish(self, kind: str, tier_keys: Sequence[str]) -> Plan[None]:
        if self._bus is None or not self.config.invalidation.broadcast:
            return
        try:
            yield Blocking(self._bus.publish, (self.name, kind, list(tier_keys)))
        except TierError as exc:
            self.bus_errors += 1
            self._warn("bus", f"{self.name}: invalidation not announced yet: {exc}")
            # Other processes' L1 copies must still hear of it: announce it
            # again (with the drop) once Redis answers, like a failed purge.
            self._remember_purge(self._shared_index(), None if kind != "keys" else list(tier_keys))

    # -- the Target protocol: sub-plans the write policies compose ----------

    def save(self, items: dict[Key, Any]) -> Plan[None]:
        assert self._store_ops is not None  # policies save only to a namespace's store
        started = _perf()
        try:
            yield self._store_ops.save_many(items)
        except Exception:
            self.store_stats.errors += 1
            raise
        self.store_stats.latency.add(_perf() - started)
        self.store_stats.sets += len(items)

    def erase(self, keys: Sequence[Key]) -> Plan[None]:
        assert self._store_ops is not None  # policies erase only from a namespace's store
        try:
            yield self._store_ops.delete_many(list(keys))
        except Exception:
            self.store_stats.errors += 1
            raise
        self.store_stats.deletes += len(keys)

    def entries(self, batch: WriteBatch, t: int) -> list[TierEntry]:
        """Tier ``t``'s entries for the batch's values (each with its own jittered TTL)."""
        serialized = self._views[t].serialized
        fill_ttl = self._fill_ttl
        return [
            (k, blob if serialized else value, fill_ttl(t), len(blob))
            for k, value, blob in zip(batch.tier_keys, batch.values, batch.data)
        ]

    def fill(self, batch: WriteBatch, skip: int | None = None, shared: bool = True) -> Plan[None]:
        for t, view in enumerate(self._views):
            if t == skip:
                self.tier_stats[t].sets += len(batch.keys)
                continue
            if view.shared and not shared:
                continue
            if not view.shared and batch.local_tiers is not None:
                # In-process copies are replaced by the namespace once the
                # change is complete, fenced (see Namespace._write_plan).
                batch.local_tiers.append(t)
                continue
            entries = self.entries(batch, t)
            if entries and (yield from self._tier_set(t, entries, batch.now)):
                self.tier_stats[t].sets += len(entries)

    def fill_local(
        self, t: int, entries: list[TierEntry], now: float, fence: Any
    ) -> Plan[bool]:
        """Put entries into an in-process tier, fenced: none outlives a change that raced it.

        The check comes after the insert: a change bumps the key's
        generation before it deletes the key, so either the change's
        delete runs after our insert, or we see its bump here and delete.
        """
        if not entries:
            return True
        keys = [e[0] for e in entries]
        fresh = self._fence.unchanged(fence, keys)
        entries = [e for e, ok in zip(entries, fresh) if ok]
        done = bool(entries) and (yield from self._tier_set(t, entries, now))
        if entries:
            inserted = [e[0] for e in entries]
            stale = [k for k, ok in zip(inserted, self._fence.unchanged(fence, inserted)) if not ok]
            if stale:
                yield from self._tier_delete(t, stale)
        return done

    def drop(self, tier_keys: Sequence[str], local: bool = True) -> Plan[None]:
        for t, view in enumerate(self._views):
            if not local and not view.shared:
                continue
            if (yield from self._tier_delete(t, list(tier_keys))):
                self.tier_stats[t].deletes += len(tier_keys)

    def _fill_ttl(self, t: int, ttl: float | None = None) -> float | None:
        """The TTL of a copy written into tier ``t``; short while the bus is deaf.

        With ``ttl_jitter`` each copy loses a random part of its TTL, so copies
        written together do not all expire (and miss) together.
        """
        ceiling = self._tier_ttls[t]
        if ttl is None or (ceiling is not None and ceiling < ttl):
            ttl = ceiling
        jitter = self.config.ttl_jitter
        if jitter and ttl is not None:
            ttl *= 1.0 - random.random() * jitter
        bus = self._bus
        if bus is not None and not self._views[t].shared and not bus.healthy:
            # Invalidations may not reach us: keep L1 copies no older than this.
            ttl = _min_ttl(ttl, self.max_staleness)
        return ttl

    # -- failure handling ---------------------------------------------------

    def _tier_call(self, t: int, op: Op[Any], what: str) -> Plan[bool]:
        """One operation on tier ``t``; a tier failure is counted, logged and read around."""
        try:
            yield op
        except TierError as exc:
            self._tier_failed(t, what, exc)
            return False
        return True

    def _tier_set(self, t: int, entries: list[TierEntry], now: float) -> Plan[bool]:
        """Write entries into tier ``t``; False if it failed (counted and logged)."""
        return self._tier_call(t, self._views[t].set_many(entries, now), "set_many")

    def _tier_delete(self, t: int, tier_keys: list[str]) -> Plan[bool]:
        """Drop keys from tier ``t``.

        A shared tier that could not drop keys (Redis down) may still hold
        their old copies: the keys are remembered and dropped, and announced
        again, as soon as the tier answers (see ``_replay_purges``).
        """
        done = yield from self._tier_call(t, self._views[t].delete_many(tier_keys), "delete_many")
        if not done and self._views[t].shared:
            self._remember_purge(t, tier_keys)
        return done

    def _tier_delete_prefix(self, t: int) -> Plan[bool]:
        """Drop the whole namespace from tier ``t``; remembered like ``_tier_delete``."""
        view = self._views[t]
        done = yield from self._tier_call(t, view.delete_prefix(self._base_prefix), "delete_prefix")
        if not done and view.shared:
            self._remember_purge(t, None)
        return done

    def _shared_index(self) -> int:
        """Index of the first shared (Redis) tier; the bus only exists when there is one."""
        return next(t for t, view in enumerate(self._views) if view.shared)

    def _remember_purge(self, t: int, keys: Sequence[str] | None) -> None:
        with self._purge_lock:
            known = self._purges.get(t, set())
            if keys is None or known is None or len(known) + len(keys) > MAX_REMEMBERED_PURGES:
                self._purges[t] = None  # too many, or all: purge the whole namespace
            else:
                known.update(keys)
                self._purges[t] = known

    def replay_purges_now(self) -> None:
        """Replay remembered purges now (from the bus thread, once Redis answers)."""
        if not self._purges:
            return
        try:
            run(self._replay_purges())
        except Exception:  # the caller is a background thread; the next operation retries
            log.exception("%s: replaying purges failed", self.name)

    def _replay_purges(self) -> Plan[None]:
        """Drop (and announce) what failed to be dropped while a shared tier was away."""
        with self._purge_lock:
            purges, self._purges = self._purges, {}
        for t, keys in purges.items():
            if keys is None:
                done = yield from self._tier_delete_prefix(t)
                if done:
                    yield from self._publish("all", ())
            else:
                ordered = sorted(keys)
                done = yield from self._tier_delete(t, ordered)
                if done:
                    yield from self._publish("keys", ordered)
            if done:
                self.purges_replayed += 1

    def _tier_result(self, t: int, op: Op[Any], what: str) -> Plan[Any]:
        """Like ``_tier_call``, but returns the operation's result (None on failure)."""
        try:
            return (yield op)
        except TierError as exc:
            self._tier_failed(t, what, exc)
            return None

    def _tier_failed(self, t: int, what: str, exc: TierError) -> None:
        """Count and log a tier failure; re-raise it under ``on_tier_error="raise"``."""
        self.tier_stats[t].errors += 1
        if self.on_tier_error == "raise":
            raise exc
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
