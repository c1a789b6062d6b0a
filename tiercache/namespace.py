"""Namespace: the synchronous facade of one namespace, over its engine."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ._engine.engine import Engine, Loader
from ._engine.ops import run
from ._engine.state import NamespaceConfig
from ._types import MISSING, Clock, Key
from .invalidation import Invalidation
from .policies import WritePolicy
from .scheduler import Scheduler, ThreadScheduler
from .serialization import Serializer
from .stats import LayerStats
from .stores.base import Store
from .tiers.base import Tier

__all__ = ["Namespace", "NamespaceBase", "NamespaceConfig"]


class NamespaceBase:
    """What the sync and async facades share: wiring, identity, stats; no I/O.

    A facade holds the namespace's :class:`~tiercache._engine.engine.Engine`
    (``engine``, the named internal API ``Cache`` and ``cached()`` use) and
    runs its plans with one driver: :class:`Namespace` on the calling
    thread, :class:`~tiercache.AsyncNamespace` on the event loop.
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
        self.engine = Engine(
            name, prefix=prefix, tiers=tiers, store=store, config=config, clock=clock,
            scheduler=scheduler if scheduler is not None else ThreadScheduler(), bus=bus,
            max_staleness=max_staleness, on_tier_error=on_tier_error, wall_clock=wall_clock,
            log_interval=log_interval,
        )
        self._state = self.engine.state  # the hot path's one attribute hop

    def __repr__(self) -> str:
        state = self._state
        return f"Namespace({state.name!r}, tiers={len(state.tiers)}, store={state.store!r})"

    @property
    def name(self) -> str:
        """The namespace's name."""
        return self._state.name

    @property
    def config(self) -> NamespaceConfig:
        """The configuration in effect."""
        return self._state.config

    @property
    def tiers(self) -> list[Tier]:
        """The tiers, as this configuration uses them."""
        return self._state.tiers

    @property
    def store(self) -> Store | None:
        """The namespace's store (``None``: a pure cache)."""
        return self._state.store

    @property
    def has_store(self) -> bool:
        """True when the namespace has a store."""
        return self._state.store is not None

    @property
    def serializer(self) -> Serializer:
        """The serializer of this configuration."""
        return self._state.serializer

    @property
    def key_prefix(self) -> str:
        """The prefix of every tier key now (the namespace version included)."""
        return self._state.key_prefix

    @property
    def journal_key(self) -> str:
        """The Redis key of the write-back journal."""
        return self._state.journal_key

    @property
    def tier_stats(self) -> list[LayerStats]:
        """Counters per tier, in tier order."""
        return self._state.tier_stats

    @property
    def store_stats(self) -> LayerStats:
        """Counters of the store."""
        return self._state.store_stats

    @property
    def bus_errors(self) -> int:
        """Announcements that could not be sent (each remembered and sent later)."""
        return self.engine.failures.bus_errors

    @property
    def purges_replayed(self) -> int:
        """Remembered purges applied once their tier answered again."""
        return self.engine.failures.purges_replayed

    @property
    def max_staleness(self) -> float:
        """Longest an L1 copy lives while the invalidation bus is deaf."""
        return self._state.max_staleness

    @property
    def on_tier_error(self) -> str:
        """``"degrade"`` (read around a failed tier) or ``"raise"``."""
        return self._state.on_tier_error

    @property
    def wall_clock(self) -> Clock:
        """The wall clock of soft-expiry stamps shared between processes."""
        return self._state.wall_clock

    def tier_key(self, key: Key) -> str:
        """The full key of ``key`` in every tier (``prefix:namespace:canonical``).

        Raises:
            InvalidKeyError: ``key`` is not a supported key type.
        """
        return self._state.encode_key(key)

    def stats(self) -> dict[str, Any]:
        """Per-layer counters and latency of this namespace."""
        return self.engine.stats()


class Namespace(NamespaceBase):
    """The read and write paths of one namespace. Get one from ``Cache.namespace()``.

    Reads go L1, L2, ..., then the store, and backfill the layers above the
    one that answered, never with a longer TTL than that layer had left.
    Writes follow the namespace's write policy. Every method validates its
    input before touching any tier or store.
    """

    def get(self, key: Key, default: Any = None) -> Any:
        """Return the value of ``key`` from the first layer that has it.

        On a miss in every tier the store is asked (when there is one) and
        the tiers are filled. Returns ``default`` (``None`` unless given; pass
        ``tiercache.MISSING`` to tell absence from a cached ``None``) when no
        layer has the key. Tier failures are counted and read around. The
        L1 copy itself is returned: mutating it mutates the cache (see
        ``copy=`` on ``Cache.namespace``).

        Raises:
            InvalidKeyError: ``key`` is not a supported key type.
            StoreError: the store failed to load.
        """
        state = self._state
        lookup = state.hit_lookup
        if lookup is None:
            return self.engine.fast.get(key, default)
        # The encoder's two inline forms (see keys.inline_prefixes): no call on a hit.
        kind = type(key)
        if kind is str and key.isascii():  # type: ignore[union-attr]
            tier_key = state.str_prefix + key  # type: ignore[operator]
        elif kind is int:
            tier_key = state.int_prefix + str(key)
        else:
            tier_key = state.encode_key(key)
        try:
            value, expires_at, _ = lookup(tier_key)
        except KeyError:
            pass
        else:
            if expires_at > state.clock():
                state.l1_stats.hits += 1
                return default if value is MISSING else value
        state.l1_stats.misses += 1
        return self.engine.fast.rest(key, tier_key, default)

    def get_many(self, keys: Iterable[Key], *, loader: Loader | None = None) -> dict[Key, Any]:
        """Return ``{key: value}`` for the keys found (a cached ``None`` included).

        One round trip per tier for the whole batch; the keys no tier has are
        asked of ``loader`` (called once with just those keys, and its answer
        cached) or else of the store, in one ``load_many``.

        Raises:
            InvalidKeyError: a key is not a supported key type (nothing is read).
            StoreError: the store (or ``loader``) failed.
        """
        return run(self.engine.get_many_plan(keys, loader))

    def set(self, key: Key, value: Any) -> None:
        """Write one value, following the namespace's write policy.

        Raises:
            InvalidKeyError: ``key`` is not a supported key type.
            SerializationError: the value cannot be serialized (nothing is written).
            ValueTooLargeError: the value is over ``max_value_bytes`` (nothing is written).
            StoreError: the store refused the write.
        """
        self.engine.fast.set(key, value)

    def set_many(self, items: Mapping[Key, Any]) -> None:
        """Write several values: one store batch and one round trip per tier.

        Every key and value is validated and serialized first, so a bad one
        leaves every tier and the store untouched.

        Raises:
            InvalidKeyError, SerializationError, ValueTooLargeError, StoreError: as :meth:`set`.
        """
        run(self.engine.set_plan(items))

    def delete(self, key: Key) -> None:
        """Delete ``key`` from the store and from every tier, in every process.

        Raises:
            InvalidKeyError: ``key`` is not a supported key type.
            StoreError: the store refused the delete (the tiers are untouched).
        """
        run(self.engine.delete_plan([key]))

    def delete_many(self, keys: Iterable[Key]) -> None:
        """Delete several keys from the store and from every tier."""
        run(self.engine.delete_plan(keys))

    def invalidate(self, key: Key) -> None:
        """Drop the cached copies of ``key`` in every tier and process; the store is untouched.

        Raises:
            InvalidKeyError: ``key`` is not a supported key type.
        """
        run(self.engine.invalidate_plan([key]))

    def invalidate_many(self, keys: Iterable[Key]) -> None:
        """Drop the cached copies of several keys in every tier and process."""
        run(self.engine.invalidate_plan(keys))

    def invalidate_all(self) -> None:
        """Drop every cached copy in this namespace, in every tier and process.

        Under Versioned this bumps the namespace version: O(1), whatever the
        namespace's size. Otherwise each tier removes the namespace's keys
        (Redis by SCAN and UNLINK in batches, never KEYS).
        """
        run(self.engine.invalidate_all_plan())

    def flush(self, timeout: float = 5.0) -> None:
        """Write what the write policy holds back (nothing under WriteThrough).

        Waits up to ``timeout`` seconds while another process is flushing
        this namespace's shared journal.

        Raises:
            StoreError: the store failed; the entries stay pending for a retry.
        """
        run(self.engine.flush_plan(timeout))

    def dead_letters(self) -> dict[Key, Any]:
        """Write-back entries given up on after repeated store failures.

        ``{key: value}``, with ``MISSING`` for a delete; empty for policies
        that never defer writes.
        """
        return run(self.engine.dead_letters_plan())

    def replay_dead_letters(self) -> int:
        """Queue the dead letters for writing again; returns how many were queued."""
        return run(self.engine.replay_dead_letters_plan())

    def configure(
        self,
        *,
        write: WritePolicy | None = None,
        invalidation: Invalidation | None = None,
    ) -> None:
        """Swap the write policy or invalidation strategy at run time.

        Pending writes of the old policy are flushed first, and a new
        invalidation strategy starts from an empty namespace in every tier
        (and every process's L1), so no read during or after the swap
        returns a value older than the store's.

        Raises:
            ConfigurationError: an argument is not a policy or strategy.
            StoreError: pending write-back entries could not be flushed (nothing changed).
        """
        run(self.engine.configure_plan(NamespaceConfig.changes(write, invalidation)))

    def close(self) -> None:
        """Flush and stop the write policy's background work."""
        run(self.engine.close_plan())
