"""Namespace: one namespace's public API, over the read path and the write policies."""

from __future__ import annotations

import copy as copy_module
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from ._core import _NEGATIVE, LoadOp, NamespaceConfig, _perf
from ._core import _NOTHING as NOTHING
from ._engine.ops import MaybeAsync, Op, Plan, Sleep, run
from ._engine.views import Fill
from ._readpath import ReadPath
from ._types import MISSING, Key
from .errors import (
    ConfigurationError,
    SerializationError,
    StoreError,
    TierError,
    ValueTooLargeError,
)
from .invalidation import Invalidation
from .keys import encode_key
from .policies import WriteBack, WriteBatch, WritePolicy
from .tiers.base import UNDECODABLE, Hit, Undecodable

__all__ = ["Namespace", "NamespaceConfig"]

Loader = Callable[[list[Key]], Mapping[Key, Any]]

FAILED = object()  # the direct read's tier failed: read around it, take no lease


class Namespace(ReadPath):
    """The read and write paths of one namespace. Get one from ``Cache.namespace()``.

    Reads go L1, L2, ..., then the store, and backfill the layers above the
    one that answered, never with a longer TTL than that layer had left.
    Writes follow the namespace's write policy. Every method validates its
    input before touching any tier or store. Each method builds a plan and
    hands it to ``_drive``: ``run`` here; ``AsyncNamespace`` awaits the same
    plans, so both have one implementation.
    """

    def _drive(self, plan: Plan[Any]) -> Any:
        """Run a plan: synchronously here; AsyncNamespace returns a coroutine."""
        return run(plan)

    def _apply(self, config: NamespaceConfig, new_policy: bool = True) -> None:
        super()._apply(config, new_policy)
        # Namespace.get's direct path: the tier right after L1, if it reads one key in one call.
        nxt = 1 if self._l1_lookup is not None else 0
        self._direct: Callable[[str], Hit | Undecodable | None] | None = (
            self._views[nxt].get_one if nxt < len(self._views) else None)
        self._l1_fill: Fill | None = self._views[0].set_one if nxt else None
        # A copying namespace answers every read with a fresh object; the
        # plain hot path stays free of the check.
        if config.copy:
            self.get = self._get_copy  # type: ignore[method-assign]
        else:
            self.__dict__.pop("get", None)
        # Namespace.set's in-process path: chosen once per configuration, not per call.
        if self._sets_in_process(config):
            self._fills = [view.set_one for view in self._views]
            self.set = self._set_in_process  # type: ignore[method-assign]
        else:
            self.__dict__.pop("set", None)

    def _sets_in_process(self, config: NamespaceConfig) -> bool:
        """Whether ``set`` can take ``_set_in_process``: nothing it does leaves the process.

        That is WriteBack itself (a subclass may write otherwise), whose
        journal is then a dict here; every tier in-process; no bus to
        announce to; and the synchronous driver under Namespace's own ``set``
        (AsyncNamespace's must go on returning awaitables).
        """
        cls = type(self)
        return (
            cls._drive is Namespace._drive
            and cls.set is Namespace.set
            and type(self._policy) is WriteBack
            and self._bus is None
            and not any(view.shared or view.serialized for view in self._views)
        )

    # -- reads --------------------------------------------------------------

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
        kind = type(key)
        if kind is str and key.isascii():  # type: ignore[union-attr]
            tier_key = self._str_prefix + key  # type: ignore[operator]
        elif kind is int:
            tier_key = self._int_prefix + str(key)
        else:
            return run(self._get_plan(key, default, 0))
        lookup = self._l1_lookup
        start = 0
        if lookup is not None:
            try:
                value, expires_at, _ = lookup(tier_key)
            except KeyError:
                pass
            else:
                if expires_at > self._clock():
                    self._l1_stats.hits += 1  # type: ignore[union-attr]
                    return default if value is MISSING else value
            self._l1_stats.misses += 1  # type: ignore[union-attr]
            start = 1
        direct = self._direct
        lease = True
        if direct is not None and not self._purges:
            # The next tier is Redis: one GET, without the plan machinery.
            value = self._get_direct(direct, tier_key)
            if value is FAILED:
                lease = False
            elif value is not NOTHING:
                return default if value is MISSING else value
            start += 1
        return run(self._get_plan(key, default, start, lease))

    def _get_direct(self, get_one: Callable[[str], Hit | Undecodable | None], tier_key: str) -> Any:
        """Ask the tier after L1 for one key; its value, or NOTHING to go on down."""
        t = 1 if self._l1_lookup is not None else 0
        stats = self.tier_stats[t]
        generation = self._fence.generation
        before = generation(tier_key) if t else None
        started = _perf()
        try:
            answer: Any = get_one(tier_key)  # told from None and UNDECODABLE by identity
        except TierError as exc:
            self._tier_failed(t, "read", exc)
            return FAILED
        stats.latency.add(_perf() - started)
        if answer is None or answer is UNDECODABLE:
            if answer is UNDECODABLE:
                self._undecodable(t, tier_key, "unknown envelope")
            stats.misses += 1
            return NOTHING
        raw, remaining = answer
        if raw == _NEGATIVE:
            value = MISSING
        else:
            try:
                value = self.decode(raw, tier_key) if self._bound else self._serializer.loads(raw)
            except SerializationError as exc:
                self._undecodable(t, tier_key, str(exc))
                stats.misses += 1
                return NOTHING
        stats.hits += 1
        fill = self._l1_fill
        if fill is not None and generation(tier_key) == before:
            # Backfill L1, fenced: insert, then drop it if a change raced us.
            fill(tier_key, value, self._fill_ttl(0, remaining), len(raw), self._clock())
            if generation(tier_key) != before:
                self._tiers[0].delete_many((tier_key,))
        return value

    def _get_copy(self, key: Key, default: Any = None) -> Any:
        value = Namespace.get(self, key, MISSING)
        return default if value is MISSING else copy_module.deepcopy(value)

    def _get_plan(self, key: Key, default: Any, start: int = 0, lease: bool = True) -> Plan[Any]:
        tier_key = self.tier_key(key)
        found = yield from self._read([key], [tier_key], self._clock(), None, start, lease)
        value = found.get(0, MISSING)
        return default if value is MISSING else value

    def _l1_peek(self, key: Key) -> Any:
        """The L1 copy of ``key`` (MISSING for a cached absence), or ``NOTHING``."""
        lookup = self._l1_lookup
        if lookup is None:
            return NOTHING
        kind = type(key)
        if kind is str:
            tier_key = self._str_prefix + key  # type: ignore[operator]
        elif kind is int:
            tier_key = self._int_prefix + str(key)
        else:
            tier_key = self.tier_key(key)
        try:
            value, expires_at, _ = lookup(tier_key)
        except KeyError:
            return NOTHING
        if expires_at > self._clock():
            self._l1_stats.hits += 1  # type: ignore[union-attr]
            return value
        return NOTHING

    def _get_or_load(self, key: Key, loader: LoadOp) -> Plan[Any]:
        """Read ``key`` through the tiers, loading a miss from ``loader``; MISSING if none."""
        found = yield from self._read([key], [self.tier_key(key)], self._clock(), loader)
        return found.get(0, MISSING)

    def get_many(self, keys: Iterable[Key], *, loader: Loader | None = None) -> Any:
        """Return ``{key: value}`` for the keys found (a cached ``None`` included).

        One round trip per tier for the whole batch; the keys no tier has are
        asked of ``loader`` (called once with just those keys, and its answer
        cached) or else of the store, in one ``load_many``.

        Raises:
            InvalidKeyError: a key is not a supported key type (nothing is read).
            StoreError: the store (or ``loader``) failed.
        """
        keys, tier_keys = self._unique(keys)
        load = None if loader is None else _loader_op(loader)
        return self._drive(self._get_many_plan(keys, tier_keys, load))

    def _unique(self, keys: Iterable[Key]) -> tuple[list[Key], list[str]]:
        """Validate every key, then drop repeats by canonical form (so 1 and True never merge)."""
        seen: dict[str, Key] = {}
        str_prefix, tier_key = self._str_prefix, self.tier_key
        for key in keys:
            seen.setdefault(
                str_prefix + key if type(key) is str and key.isascii() else tier_key(key), key
            )
        return list(seen.values()), list(seen)

    def _get_many_plan(
        self, keys: list[Key], tier_keys: list[str], loader: LoadOp | None
    ) -> Plan[dict[Key, Any]]:
        found = yield from self._read(keys, tier_keys, self._clock(), loader)
        get = found.get
        out = {key: value for i, key in enumerate(keys) if (value := get(i, MISSING)) is not MISSING}
        if self.config.copy:
            return {key: copy_module.deepcopy(value) for key, value in out.items()}
        return out

    # -- writes -------------------------------------------------------------

    def set(self, key: Key, value: Any) -> Any:
        """Write one value, following the namespace's write policy.

        Raises:
            InvalidKeyError: ``key`` is not a supported key type.
            SerializationError: the value cannot be serialized (nothing is written).
            ValueTooLargeError: the value is over ``max_value_bytes`` (nothing is written).
            StoreError: the store refused the write.
        """
        self.tier_key(key)  # refuse a bad key before it meets a dict (unhashable, True == 1)
        return self.set_many({key: value})

    def _set_in_process(self, key: Key, value: Any) -> None:
        """``set`` when ``_sets_in_process``: ``_prepare`` and ``_write_plan`` for one key, inline.

        The same steps in the same order, without a batch, a plan or the
        driver, which cost several times the write itself: validate and
        serialize; bump the fence, journal, bump it again; then fill each
        tier only if no other change touched the key meanwhile, and check
        again after the insert (see ``fill_local``). Writes that need I/O
        first (purges to replay, a full journal to flush) take ``_write_plan``,
        and so does a caller that kept ``ns.set`` across a ``configure()``
        that swapped WriteBack out.
        """
        if type(key) is str and key.isascii():
            field = "s:" + key
            tier_key = self._str_prefix + key
        else:
            field = encode_key(key)  # InvalidKeyError, before anything is written
            tier_key = self.key_prefix + field
        config = self.config
        data = self.encode(value, tier_key) if self._bound else self._serializer.dumps(value)
        limit = config.max_value_bytes
        if limit is not None and len(data) > limit:
            raise self._too_large(key, data, limit)
        now = self._clock()
        policy = self._policy
        if type(policy) is not WriteBack or self._purges or not policy.local_room(1):
            run(self._write_plan(WriteBatch([key], [tier_key], [value], [data], now)))
            return
        fence = self._fence
        epoch, before = fence.bump_one(tier_key)
        try:
            policy.journal_one(field, data)
        finally:
            after = fence.bump_one(tier_key)
        raced = after != (epoch, before + 1)  # another change moved the key between our bumps
        size = len(data)
        generation = fence.generation
        fills = self._fills
        for t, tier in enumerate(self._tiers):
            ttl = self._fill_ttl(t)
            if raced:
                self._drop_local(t, tier_key)
            elif generation(tier_key) == after:
                try:
                    fills[t](tier_key, value, ttl, size, now)
                    done = True
                except TierError as exc:
                    self._tier_failed(t, "set_many", exc)
                    done = False
                if generation(tier_key) != after:
                    self._drop_local(t, tier_key)
                if done:
                    self.tier_stats[t].sets += 1

    def _drop_local(self, t: int, tier_key: str) -> None:
        """Delete a key from in-process tier ``t``; a failure is handled as in ``_tier_call``."""
        try:
            self._tiers[t].delete_many([tier_key])
        except TierError as exc:
            self._tier_failed(t, "delete_many", exc)

    def set_many(self, items: Mapping[Key, Any]) -> Any:
        """Write several values: one store batch and one round trip per tier.

        Every key and value is validated and serialized first, so a bad one
        leaves every tier and the store untouched.

        Raises:
            InvalidKeyError, SerializationError, ValueTooLargeError, StoreError: as :meth:`set`.
        """
        return self._drive(self._set_plan(items))

    def _set_plan(self, items: Mapping[Key, Any]) -> Plan[None]:
        batch = self._prepare(items)  # validation before any I/O: raises at call time
        return self._write_plan(batch)

    def _write_plan(self, batch: WriteBatch) -> Plan[None]:
        if self._purges:
            yield from self._replay_purges()
        fence = self._fence
        epoch, before = fence.bump(batch.tier_keys)
        batch.local_tiers = []
        try:
            yield from self._policy.write(batch, self)
        finally:
            after_epoch, after = fence.bump(batch.tier_keys)
        if batch.local_tiers:
            # This process's copies are replaced last, after the change is
            # complete, and only for keys no other change touched meanwhile
            # (their generation moved by our own second bump alone); any
            # change that lands after our insert deletes or replaces it.
            unraced = {k for k in batch.tier_keys
                       if after_epoch == epoch and after[k] == before[k] + 1}
            raced = [k for k in batch.tier_keys if k not in unraced]
            for t in batch.local_tiers:
                entries = [e for e in self.entries(batch, t) if e[0] in unraced]
                if entries and (yield from self.fill_local(t, entries, batch.now, (after_epoch, after))):
                    self.tier_stats[t].sets += len(entries)
                if raced:
                    yield from self._tier_delete(t, raced)
        if batch.announced:  # the policy's tier script added the bus entry
            self._bus.announced()
        else:
            yield from self._publish("keys", batch.tier_keys)

    def _prepare(self, items: Mapping[Key, Any]) -> WriteBatch:
        if not isinstance(items, Mapping):
            raise ConfigurationError(f"set_many takes a mapping, not {type(items).__name__}")
        keys = list(items)
        tier_keys = [self.tier_key(k) for k in keys]
        values = [items[k] for k in keys]
        encode = self.encode
        data = [encode(v, k) for v, k in zip(values, tier_keys)]
        limit = self.config.max_value_bytes
        if limit is not None:
            for key, blob in zip(keys, data):
                if len(blob) > limit:
                    raise self._too_large(key, blob, limit)
        return WriteBatch(keys, tier_keys, values, data, self._clock())

    def _too_large(self, key: Key, blob: bytes, limit: int) -> ValueTooLargeError:
        """The refusal of a value over ``max_value_bytes``, worded alike on both write paths."""
        return ValueTooLargeError(
            f"{self.name}: value of {key!r} is {len(blob)} bytes serialized, "
            f"over max_value_bytes={limit}"
        )

    def delete(self, key: Key) -> Any:
        """Delete ``key`` from the store and from every tier, in every process.

        Raises:
            InvalidKeyError: ``key`` is not a supported key type.
            StoreError: the store refused the delete (the tiers are untouched).
        """
        return self.delete_many([key])

    def delete_many(self, keys: Iterable[Key]) -> Any:
        """Delete several keys from the store and from every tier."""
        keys, tier_keys = self._unique(keys)
        return self._drive(
            self._announced(self._policy.delete(keys, tier_keys, self), "keys", tier_keys)
        )

    def invalidate(self, key: Key) -> Any:
        """Drop the cached copies of ``key`` in every tier and process; the store is untouched.

        Raises:
            InvalidKeyError: ``key`` is not a supported key type.
        """
        return self.invalidate_many([key])

    def invalidate_many(self, keys: Iterable[Key]) -> Any:
        """Drop the cached copies of several keys in every tier and process."""
        return self._drive(self._invalidate_plan(keys))

    def _invalidate_plan(self, keys: Iterable[Key]) -> Plan[None]:
        _keys, tier_keys = self._unique(keys)
        return self._announced(self.drop(tier_keys), "keys", tier_keys)

    def invalidate_all(self) -> Any:
        """Drop every cached copy in this namespace, in every tier and process.

        Under Versioned this bumps the namespace version: O(1), whatever the
        namespace's size. Otherwise each tier removes the namespace's keys
        (Redis by SCAN and UNLINK in batches, never KEYS).
        """
        if self.config.invalidation.versioned:
            return self._drive(self._bump_version())
        return self._drive(self._announced(self._drop_all(), "all", ()))

    # -- write-back ---------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> Any:
        """Write what the write policy holds back (nothing under WriteThrough).

        Waits up to ``timeout`` seconds while another process is flushing
        this namespace's shared journal.

        Raises:
            StoreError: the store failed; the entries stay pending for a retry.
        """
        return self._drive(self._flush_plan(timeout))

    def _flush_plan(self, timeout: float) -> Plan[None]:
        deadline = time.monotonic() + timeout
        for _attempt in range(100_000):  # bounded; the deadline ends it sooner
            busy, failed = (yield from self._policy.flush(self, True)) or (False, 0)
            if failed:
                raise StoreError(
                    f"{self.name}: {failed} write-back entries could not be written "
                    "to the store; they stay pending and are retried"
                )
            if not busy or time.monotonic() >= deadline:
                return
            yield Sleep(0.02)

    def dead_letters(self) -> Any:
        """Write-back entries given up on after repeated store failures.

        ``{key: value}``, with ``MISSING`` for a delete; empty for policies
        that never defer writes.
        """
        plan = getattr(self._policy, "dead_letters", None)
        return self._drive(plan(self) if plan is not None else _constant({}))

    def replay_dead_letters(self) -> Any:
        """Queue the dead letters for writing again; returns how many were queued."""
        plan = getattr(self._policy, "replay_dead_letters", None)
        return self._drive(plan(self) if plan is not None else _constant(0))

    # -- configuration and lifecycle ----------------------------------------

    def configure(
        self,
        *,
        write: WritePolicy | None = None,
        invalidation: Invalidation | None = None,
    ) -> Any:
        """Swap the write policy or invalidation strategy at run time.

        Pending writes of the old policy are flushed first, and a new
        invalidation strategy starts from an empty namespace in every tier
        (and every process's L1), so no read during or after the swap
        returns a value older than the store's.

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
        return self._drive(self._configure_plan(changes))

    def _configure_plan(self, changes: dict[str, Any]) -> Plan[None]:
        if not changes:
            return
        old_policy = self._policy
        yield from self._flush_plan(5.0)  # raises, changing nothing, if writes are stuck
        self._apply(replace(self.config, **changes), new_policy="write" in changes)
        if "invalidation" in changes:
            # Keys cached under the old strategy (versioned or not) could be
            # read again by a later swap back: drop the namespace everywhere.
            yield from self._announced(self._drop_all(), "all", ())
        if self._policy is not old_policy:
            old_policy.close()
            self._policy.start(self, self._scheduler)

    def close(self) -> Any:
        """Flush and stop the write policy's background work."""
        return self._drive(self._close_plan())

    def _close_plan(self) -> Plan[None]:
        try:
            yield from self._flush_plan(5.0)
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
            "purges_pending": sum(
                len(keys) if keys is not None else 1 for keys in self._purges.values()
            ),
            "purges_replayed": self.purges_replayed,
        }
        counters = getattr(self._policy, "counters", None)
        if counters is not None:
            out["write_back"] = counters()
        return out


def _constant(value: Any) -> Plan[Any]:
    return value
    yield  # a plan with no I/O


def _loader_op(loader: Loader) -> LoadOp:
    """A ``get_many(loader=)`` callable as the operation that loads the missing keys."""

    def load(keys: list[Key]) -> Op[Mapping[Key, Any]]:
        return MaybeAsync(loader, (keys,), "a coroutine loader needs AsyncCache")

    return load
