"""Write plans: validation, the policy's write under fences, local fills, drops, announcements."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .._types import Key
from ..errors import ConfigurationError, TierError, ValueTooLargeError
from ..policies import WriteContext
from ..serialization import Serializer
from ..stores.base import Store
from ..tiers.base import Tier, TierEntry
from .common import perf
from .failures import Failures
from .ops import Plan, perform
from .state import State
from .views import TierView

__all__ = ["Writer"]


class Writer:
    """The write side of a namespace, and the ``Target`` its write policy acts on.

    ``write`` runs the policy's plan between two fence bumps, then replaces
    this process's own copies (only for keys no other change touched
    meanwhile) and announces the change. The sub-plans a policy composes
    (``save``, ``erase``, ``fill``, ``drop``) handle tier failures
    themselves; store failures propagate, the store being the system of record.
    """

    def __init__(self, state: State, failures: Failures) -> None:
        self.state = state
        self.failures = failures

    # -- the Target protocol: what a policy reads -----------------------------

    @property
    def name(self) -> str:
        """The namespace's name."""
        return self.state.name

    @property
    def tiers(self) -> Sequence[Tier]:
        """The tiers, as the configuration faces them."""
        return self.state.tiers

    @property
    def views(self) -> Sequence[TierView]:
        """Each tier's operations and capabilities, as configured."""
        return self.state.views

    @property
    def store(self) -> Store | None:
        """The namespace's store, if any."""
        return self.state.store

    @property
    def serializer(self) -> Serializer:
        """The namespace's serializer."""
        return self.state.serializer

    @property
    def key_prefix(self) -> str:
        """The prefix of every tier key now (the version included)."""
        return self.state.key_prefix

    @property
    def journal_key(self) -> str:
        """The write-back journal's key."""
        return self.state.journal_key

    def decode_field(self, data: bytes, field: str) -> Any:
        """Deserialize a journal payload stored for the canonical key ``field``."""
        return self.state.decode_field(data, field)

    # -- writes -------------------------------------------------------------

    def prepare(self, items: Mapping[Key, Any]) -> WriteContext:
        """Validate and serialize every item before any I/O (raises at call time)."""
        if not isinstance(items, Mapping):
            raise ConfigurationError(f"set_many takes a mapping, not {type(items).__name__}")
        state = self.state
        keys = list(items)
        encode_key = state.encode_key
        tier_keys = [encode_key(k) for k in keys]
        values = [items[k] for k in keys]
        encode = state.encode
        data = [encode(v, k) for v, k in zip(values, tier_keys, strict=True)]
        limit = state.config.max_value_bytes
        if limit is not None:
            for key, blob in zip(keys, data, strict=True):
                if len(blob) > limit:
                    raise self.too_large(key, blob, limit)
        return WriteContext(keys, tier_keys, values, data, state.clock())

    def too_large(self, key: Key, blob: bytes, limit: int) -> ValueTooLargeError:
        """The refusal of a value over ``max_value_bytes``, worded alike on every write path."""
        return ValueTooLargeError(
            f"{self.state.name}: value of {key!r} is {len(blob)} bytes serialized, "
            f"over max_value_bytes={limit}"
        )

    def write(self, ctx: WriteContext) -> Plan[None]:
        """``set_many`` of a prepared context, by the namespace's policy."""
        state, failures = self.state, self.failures
        if failures.purges:
            yield from failures.replay()
        fence = state.fence
        epoch, before = fence.bump(ctx.tier_keys)
        try:
            outcome = yield from state.run.write(ctx, self)
        finally:
            after_epoch, after = fence.bump(ctx.tier_keys)
        local = state.local_tiers
        if outcome.fill_local and local:
            # This process's copies are replaced last, after the change is
            # complete, and only for keys no other change touched meanwhile
            # (their generation moved by our own second bump alone); any
            # change that lands after our insert deletes or replaces it.
            unraced = fence.moved_alone((epoch, before), (after_epoch, after), ctx.tier_keys)
            raced = [k for k in ctx.tier_keys if k not in unraced]
            for t in local:
                entries = [e for e in self.entries(ctx, t) if e[0] in unraced]
                if entries and (
                    yield from self.fill_local(t, entries, ctx.now, (after_epoch, after))
                ):
                    state.tier_stats[t].sets += len(entries)
                if raced:
                    yield from failures.delete(t, raced)
        if outcome.announced:  # the policy's tier script added the bus entry
            state.bus.announced()
        else:
            yield from failures.publish("keys", ctx.tier_keys)

    def delete(self, keys: list[Key], tier_keys: list[str]) -> Plan[None]:
        """``delete_many``: the policy's delete, fenced and announced."""
        return self.announced(self.state.run.delete(keys, tier_keys, self), "keys", tier_keys)

    def invalidate(self, tier_keys: list[str]) -> Plan[None]:
        """``invalidate_many``: every tier's copies, fenced and announced."""
        return self.announced(self.drop(tier_keys), "keys", tier_keys)

    def invalidate_all(self) -> Plan[None]:
        """``invalidate_all``: a version bump under Versioned, else a drop of the namespace."""
        if self.state.config.invalidation.versioned:
            return self.bump_version()
        return self.announced(self.drop_all(), "all", ())

    # -- changes: fences, announcements, whole-namespace drops ---------------

    def announced(self, plan: Plan[None], kind: str, tier_keys: Sequence[str]) -> Plan[None]:
        """Run a change, then tell the other processes (Purge and Versioned).

        The fence is bumped before and after, so a read that loaded while
        the change ran does not fill the tiers with what it loaded.
        """
        failures = self.failures
        if failures.purges:
            yield from failures.replay()
        self.touch(kind, tier_keys)
        try:
            yield from plan
        finally:
            self.touch(kind, tier_keys)
        yield from failures.publish(kind, tier_keys)

    def touch(self, kind: str, tier_keys: Sequence[str]) -> None:
        """Bump the fence of the keys a change touches (all of them for ``kind != "keys"``)."""
        if kind == "keys":
            self.state.fence.bump(tier_keys)
        else:
            self.state.fence.bump_all()

    def drop_all(self) -> Plan[None]:
        """Remove the whole namespace from every tier."""
        for t in range(len(self.state.tiers)):
            yield from self.failures.delete_prefix(t)

    def bump_version(self) -> Plan[None]:
        """Move the namespace to a new version: O(1), whatever its size."""
        state = self.state
        view = state.version_view
        version = state.version + 1
        if view is not None and view.versions is not None:
            try:
                version = yield from perform(view.versions.bump(state.version_key))
            except TierError as exc:
                # Redis unreachable: drop what we can reach, as Purge would.
                state.warn("version", f"{state.name}: version bump failed, purging: {exc}")
                yield from self.drop_all()
                return
        state.set_version(int(version))
        # Old copies, in L1 too, are unreachable now and leave by LRU or TTL:
        # sweeping L1 here would make invalidate_all O(L1 size), not O(1).
        yield from self.failures.publish("version", [str(version)])

    def announcement(self, t: int, tier_keys: Sequence[str]) -> tuple[str, bytes, int] | None:
        """The Target protocol's: the bus entry for tier ``t``'s script, if the bus is on it."""
        state = self.state
        bus = state.bus
        if bus is None or not state.config.invalidation.broadcast:
            return None
        shared = state.base_views[t].shared_tier
        if shared is None or shared.client is not bus.client:
            return None  # the bus's stream is on another server
        entry: tuple[str, bytes, int] = bus.entry(state.name, "keys", list(tier_keys))
        return entry

    # -- the Target protocol: sub-plans the write policies compose ----------

    def save(self, items: dict[Key, Any]) -> Plan[None]:
        """Write items to the store."""
        state = self.state
        assert state.store_ops is not None  # noqa: S101 - narrows: policies save only to a store
        started = perf()
        try:
            yield state.store_ops.save_many(items)
        except Exception:
            state.store_stats.errors += 1
            raise
        state.store_stats.latency.add(perf() - started)
        state.store_stats.sets += len(items)

    def erase(self, keys: Sequence[Key]) -> Plan[None]:
        """Delete the keys from the store."""
        state = self.state
        assert state.store_ops is not None  # noqa: S101 - narrows: policies erase only from a store
        try:
            yield state.store_ops.delete_many(list(keys))
        except Exception:
            state.store_stats.errors += 1
            raise
        state.store_stats.deletes += len(keys)

    def entries(self, batch: WriteContext, t: int) -> list[TierEntry]:
        """Tier ``t``'s entries for the batch's values (each with its own jittered TTL)."""
        serialized = self.state.views[t].serialized
        fill_ttl = self.state.fill_ttl
        return [
            (k, blob if serialized else value, fill_ttl(t), len(blob))
            for k, value, blob in zip(batch.tier_keys, batch.values, batch.data, strict=True)
        ]

    def fill(self, batch: WriteContext, skip: int | None = None) -> Plan[None]:
        """Replace the shared tiers' copies (but tier ``skip``'s, written already).

        In-process copies are replaced by ``write`` once the change is
        complete, fenced, when the policy's outcome asks for it.
        """
        state = self.state
        for t, view in enumerate(state.views):
            if t == skip:
                state.tier_stats[t].sets += len(batch.keys)
                continue
            if not view.shared:
                continue
            entries = self.entries(batch, t)
            if entries and (yield from self.failures.set(t, entries, batch.now)):
                state.tier_stats[t].sets += len(entries)

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
        unchanged = self.state.fence.unchanged
        keys = [e[0] for e in entries]
        entries = [e for e, ok in zip(entries, unchanged(fence, keys), strict=True) if ok]
        done = bool(entries) and (yield from self.failures.set(t, entries, now))
        if entries:
            inserted = [e[0] for e in entries]
            stale = [
                k for k, ok in zip(inserted, unchanged(fence, inserted), strict=True) if not ok
            ]
            if stale:
                yield from self.failures.delete(t, stale)
        return done

    def drop(self, tier_keys: Sequence[str], local: bool = True) -> Plan[None]:
        """Remove the keys from every shared tier, and from in-process ones if ``local``."""
        state = self.state
        for t, view in enumerate(state.views):
            if not local and not view.shared:
                continue
            if (yield from self.failures.delete(t, list(tier_keys))):
                state.tier_stats[t].deletes += len(tier_keys)
