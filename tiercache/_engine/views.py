"""A namespace's view of each tier and its store: capabilities checked once, as typed operations."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

from .._types import Key
from ..stores.base import Store
from ..tiers.base import (
    AsyncJournaling,
    AsyncLeasing,
    AsyncTier,
    AsyncVersioning,
    Hit,
    Journaling,
    Leasing,
    LocalLookup,
    NonBlocking,
    Shared,
    SingleKeyRead,
    Tier,
    TierEntry,
    Undecodable,
    Versioning,
)
from .ops import AsyncCall, Blocking, Call, Op

__all__ = [
    "Answers",
    "AsyncStore",
    "Fill",
    "JournalOps",
    "LeaseOps",
    "StoreOps",
    "TierView",
    "VersionOps",
    "maker",
]

T = TypeVar("T")

Answers = list[Hit | Undecodable | None]
Fill = Callable[[str, Any, "float | None", int, float], None]
"""``set_one(key, value, ttl, size, now)``: one entry into an in-process tier."""


def maker(
    fn: Callable[..., T], afn: Callable[..., Awaitable[T]] | None, inline: bool
) -> Callable[..., Op[T]]:
    """A factory of ``fn``'s operation, its kind chosen now rather than on every call.

    A coroutine twin makes an :class:`AsyncCall`; a tier that never waits
    (in memory) a :class:`Call`; anything else a :class:`Blocking`, which the
    async driver runs in a worker thread.
    """
    if afn is not None:
        twin = afn

        def paired(*args: Any) -> Op[T]:
            return AsyncCall(fn, twin, args)

        return paired
    if inline:

        def direct(*args: Any) -> Op[T]:
            return Call(fn, args)

        return direct

    def blocking(*args: Any) -> Op[T]:
        return Blocking(fn, args)

    return blocking


class LeaseOps:
    """The operations of a :class:`Leasing` tier."""

    __slots__ = ("fill_leased", "lease_many", "release")

    def __init__(self, tier: Leasing, inline: bool) -> None:
        twin = tier if isinstance(tier, AsyncLeasing) else None
        self.lease_many: Callable[[Sequence[str], str, float], Op[list[bool]]] = maker(
            tier.lease_many, twin.alease_many if twin else None, inline)
        self.fill_leased: Callable[[Sequence[TierEntry], str], Op[int]] = maker(
            tier.fill_leased, twin.afill_leased if twin else None, inline)
        self.release: Callable[[Sequence[str], str], Op[None]] = maker(
            tier.release, twin.arelease if twin else None, inline)


class JournalOps:
    """The operations of a :class:`Journaling` tier (the write-back journal and its lock)."""

    __slots__ = ("ack", "get", "put", "read", "restore", "try_lock", "unlock")

    def __init__(self, tier: Journaling, inline: bool) -> None:
        twin = tier if isinstance(tier, AsyncJournaling) else None
        self.put: Callable[..., Op[bool]] = maker(
            tier.journal_put, twin.ajournal_put if twin else None, inline)
        self.get: Callable[[str, Sequence[str]], Op[list[bytes | None]]] = maker(
            tier.journal_get, twin.ajournal_get if twin else None, inline)
        self.read: Callable[[str, int], Op[dict[str, bytes]]] = maker(
            tier.journal_read, twin.ajournal_read if twin else None, inline)
        self.ack: Callable[[str, Mapping[str, bytes], str | None], Op[int]] = maker(
            tier.journal_ack, twin.ajournal_ack if twin else None, inline)
        self.restore: Callable[[str, str, Sequence[str]], Op[int]] = maker(
            tier.journal_restore, twin.ajournal_restore if twin else None, inline)
        self.try_lock: Callable[[str, str, float], Op[bool]] = maker(
            tier.try_lock, twin.atry_lock if twin else None, inline)
        self.unlock: Callable[[str, str], Op[None]] = maker(
            tier.unlock, twin.aunlock if twin else None, inline)


class VersionOps:
    """The operations of a :class:`Versioning` tier, and its blocking version read."""

    __slots__ = ("bump", "read_now")

    def __init__(self, tier: Versioning, inline: bool) -> None:
        twin = tier if isinstance(tier, AsyncVersioning) else None
        self.bump: Callable[[str], Op[int]] = maker(
            tier.bump_version, twin.abump_version if twin else None, inline)
        # Read while configuring, outside any plan (a namespace is built synchronously).
        self.read_now: Callable[[str], int] = tier.read_version


class TierView:
    """One tier as a namespace uses it: its operations, and what it can do.

    Built when the namespace is configured (and again when the
    configuration changes), so the read and write paths choose by
    attribute (``view.lease is not None``) instead of asking the tier.
    """

    __slots__ = (
        "delete_many",
        "delete_prefix",
        "get_many",
        "get_one",
        "journal",
        "lease",
        "lookup",
        "serialized",
        "set_many",
        "set_one",
        "shared",
        "shared_tier",
        "tier",
        "versions",
    )

    def __init__(self, tier: Tier) -> None:
        self.tier = tier
        self.serialized: bool = bool(tier.serialized)
        self.shared_tier: Shared | None = tier if isinstance(tier, Shared) else None
        self.shared = self.shared_tier is not None
        inline = isinstance(tier, NonBlocking) and bool(tier.nonblocking)
        twin = tier if isinstance(tier, AsyncTier) else None
        self.get_many: Callable[[Sequence[str], float], Op[Answers]] = maker(
            tier.get_many, twin.aget_many if twin else None, inline)
        self.set_many: Callable[[Sequence[TierEntry], float], Op[None]] = maker(
            tier.set_many, twin.aset_many if twin else None, inline)
        self.delete_many: Callable[[Sequence[str]], Op[None]] = maker(
            tier.delete_many, twin.adelete_many if twin else None, inline)
        self.delete_prefix: Callable[[str], Op[None]] = maker(
            tier.delete_prefix, twin.adelete_prefix if twin else None, inline)
        self.lease = LeaseOps(tier, inline) if isinstance(tier, Leasing) else None
        self.journal = JournalOps(tier, inline) if isinstance(tier, Journaling) else None
        self.versions = VersionOps(tier, inline) if isinstance(tier, Versioning) else None
        self.get_one: Callable[[str], Hit | Undecodable | None] | None = (
            tier.get_one if isinstance(tier, SingleKeyRead) else None)
        self.lookup: Callable[[str], tuple[Any, float, int]] | None = None
        if isinstance(tier, LocalLookup) and not self.shared:
            self.lookup = tier.lookup
        self.set_one: Fill = _set_one(tier)


def _set_one(tier: Tier) -> Fill:
    """``tier.set_one``, or the same through ``set_many``.

    ``set_one`` is used only where the class that defines it also defines the
    ``set_many`` in effect: a subclass that overrides ``set_many`` alone (to
    count, to fail, to log) keeps seeing every write.
    """
    if isinstance(tier, LocalLookup):
        mro = type(tier).__mro__
        one = next((c for c in mro if "set_one" in c.__dict__), None)
        many = next((c for c in mro if "set_many" in c.__dict__), None)
        if one is not None and one is many:
            return tier.set_one

    def through_many(key: str, value: Any, ttl: float | None, size: int, now: float) -> None:
        tier.set_many([(key, value, ttl, size)], now)

    return through_many


@runtime_checkable
class AsyncStore(Protocol):
    """A store with coroutine twins (a wrapped async repository)."""

    async def aload_many(self, keys: Sequence[Key]) -> dict[Key, Any]:
        """Coroutine form of ``load_many``."""
        ...

    async def asave_many(self, items: Mapping[Key, Any]) -> None:
        """Coroutine form of ``save_many``."""
        ...

    async def adelete_many(self, keys: Sequence[Key]) -> None:
        """Coroutine form of ``delete_many``."""
        ...


class StoreOps:
    """A store's operations: coroutine twins where it has them, else worker-thread calls.

    The store's methods are looked up on each call, not bound here, so a
    store object can be swapped or instrumented after wiring.
    """

    __slots__ = ("_async", "store")

    def __init__(self, store: Store) -> None:
        self.store = store
        self._async: AsyncStore | None = store if isinstance(store, AsyncStore) else None

    def load_many(self, keys: Sequence[Key]) -> Op[Mapping[Key, Any]]:
        """``store.load_many(keys)``."""
        if self._async is not None:
            return AsyncCall(self.store.load_many, self._async.aload_many, (keys,))
        return Blocking(self.store.load_many, (keys,))

    def save_many(self, items: Mapping[Key, Any]) -> Op[None]:
        """``store.save_many(items)``."""
        if self._async is not None:
            return AsyncCall(self.store.save_many, self._async.asave_many, (items,))
        return Blocking(self.store.save_many, (items,))

    def delete_many(self, keys: Sequence[Key]) -> Op[None]:
        """``store.delete_many(keys)``."""
        if self._async is not None:
            return AsyncCall(self.store.delete_many, self._async.adelete_many, (keys,))
        return Blocking(self.store.delete_many, (keys,))
