"""The Tier protocol: one layer of cache that stores entries with TTLs and evicts."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "UNDECODABLE",
    "AsyncClosing",
    "AsyncJournaling",
    "AsyncLeasing",
    "AsyncTier",
    "AsyncVersioning",
    "Hit",
    "Journaling",
    "Leasing",
    "LocalLookup",
    "NonBlocking",
    "Shared",
    "SingleKeyRead",
    "Tier",
    "TierEntry",
    "Undecodable",
    "Versioning",
]

Hit = tuple[Any, float | None]
"""A tier's answer for a key it holds: ``(value, remaining TTL in seconds or None)``."""

TierEntry = tuple[str, Any, float | None, int]
"""One entry to write: ``(key, value, ttl seconds or None, serialized size in bytes)``."""


class Undecodable:
    """Type of :data:`UNDECODABLE`."""

    def __repr__(self) -> str:
        return "tiercache.tiers.UNDECODABLE"


UNDECODABLE = Undecodable()
"""Returned by a tier in place of a hit for bytes it did not write (a miss, counted)."""


@runtime_checkable
class Tier(Protocol):
    """One cache layer. Batch methods are the primitive; every call is one round trip.

    Keys are full tier keys (``prefix:namespace:canonical``). A tier with
    ``serialized = True`` stores and returns bytes, which the namespace encodes
    and decodes; one with ``serialized = False`` keeps the Python objects
    themselves. ``ttl`` is the tier's own ceiling (``None``: none). ``now`` is
    the caller's clock reading for the operation; tiers that expire by their
    own clock (Redis) ignore it. A tier never raises ``KeyError`` for a miss;
    failures of its client arrive as :class:`~tiercache.errors.TierError`.
    """

    name: str
    serialized: bool
    ttl: float | None

    def get_many(self, keys: Sequence[str], now: float) -> list[Hit | Undecodable | None]:
        """Return, in order, a :data:`Hit`, ``UNDECODABLE`` or ``None`` (miss) per key."""
        ...

    def set_many(self, entries: Sequence[TierEntry], now: float) -> None:
        """Store every entry with its own TTL (``None``: no expiry)."""
        ...

    def delete_many(self, keys: Sequence[str]) -> None:
        """Remove the keys; absent keys are ignored."""
        ...

    def delete_prefix(self, prefix: str) -> None:
        """Remove every key that starts with ``prefix``, without blocking the tier."""
        ...

    def close(self) -> None:
        """Release connections and memory; idempotent."""
        ...


# -- capabilities: what a tier can do beyond the protocol above --------------
#
# A namespace checks these once, when it is configured (``isinstance``), and
# builds the operations it will run from the answer; nothing on a read or a
# write asks a tier what it can do.


@runtime_checkable
class Shared(Protocol):
    """A tier other processes share (Redis): a change must reach it, or be remembered.

    Its copies outlive this process's view, so a failed drop is replayed
    when it answers again, and the invalidation bus rides on its connection.
    """

    client: Any

    @property
    def available(self) -> bool:
        """False while the tier is skipped after repeated failures."""
        ...

    def ping(self) -> bool:
        """True if the server answers now."""
        ...

    def listener(self, read_timeout: float, client_name: str | None = None) -> Any:
        """A separate connection for the bus's blocking reads."""
        ...


@runtime_checkable
class NonBlocking(Protocol):
    """A tier whose calls never wait on I/O: AsyncCache calls it on the event loop."""

    nonblocking: bool


@runtime_checkable
class LocalLookup(Protocol):
    """An in-process tier with a raw lookup for the L1 hit path and a one-entry fill."""

    lookup: Callable[[str], tuple[Any, float, int]]
    """``(value, expires_at, size)`` of a key, or ``KeyError``; the caller checks expiry."""

    def set_one(self, key: str, value: Any, ttl: float | None, size: int, now: float) -> None:
        """``set_many`` of one entry."""
        ...


@runtime_checkable
class SingleKeyRead(Protocol):
    """A tier that reads one key in one call without building a batch (Redis GET)."""

    def get_one(self, key: str) -> Hit | Undecodable | None:
        """``get_many([key])[0]``, the tier's own clock deciding expiry."""
        ...


@runtime_checkable
class Leasing(Protocol):
    """Leases on keys (memcache's idea): only a lease holder may fill a loaded value."""

    def lease_many(self, keys: Sequence[str], token: str, ttl: float) -> list[bool]:
        """Take the lease of each key that has none; per key, whether we hold it."""
        ...

    def fill_leased(self, entries: Sequence[TierEntry], token: str) -> int:
        """Write the entries whose lease ``token`` still holds; how many were written."""
        ...

    def release(self, keys: Sequence[str], token: str) -> None:
        """Give back the leases ``token`` holds."""
        ...


@runtime_checkable
class Journaling(Protocol):
    """A write-back journal kept in the tier, written atomically with the cached copies."""

    def journal_put(self, journal: str, seq_key: str, records: Sequence[tuple[str, bytes]],
                    entries: Sequence[TierEntry], limit: int,
                    announce: tuple[str, bytes, int] | None = None) -> bool:
        """Record pending writes and their copies; False (nothing written) when full."""
        ...

    def journal_get(self, journal: str, fields: Sequence[str]) -> list[bytes | None]:
        """The pending entries of ``fields``."""
        ...

    def journal_read(self, journal: str, count: int) -> dict[str, bytes]:
        """Up to ``count`` pending entries."""
        ...

    def journal_ack(self, journal: str, entries: Mapping[str, bytes],
                    move_to: str | None = None) -> int:
        """Remove entries unchanged since read (into ``move_to`` if given)."""
        ...

    def journal_restore(self, journal: str, dead: str, fields: Sequence[str]) -> int:
        """Move dead letters back unless newer entries are pending; how many moved."""
        ...

    def try_lock(self, key: str, token: str, lease: float) -> bool:
        """Take the flush lease."""
        ...

    def unlock(self, key: str, token: str) -> None:
        """Give back the flush lease if ``token`` holds it."""
        ...


@runtime_checkable
class Versioning(Protocol):
    """Namespace versions kept in the tier, and a per-key-version face of it."""

    def bump_version(self, key: str) -> int:
        """Raise the version under ``key``; the new version."""
        ...

    def read_version(self, key: str) -> int:
        """The version under ``key``."""
        ...

    def keyed_versions(self) -> Any:
        """The tier as a Versioned namespace uses it: every copy carries its key's version."""
        ...


@runtime_checkable
class AsyncTier(Protocol):
    """A tier with coroutine twins of the :class:`Tier` methods (``aget_many``, ...)."""

    async def aget_many(self, keys: Sequence[str], now: float) -> list[Hit | Undecodable | None]:
        """Coroutine form of ``get_many``."""
        ...

    async def aset_many(self, entries: Sequence[TierEntry], now: float) -> None:
        """Coroutine form of ``set_many``."""
        ...

    async def adelete_many(self, keys: Sequence[str]) -> None:
        """Coroutine form of ``delete_many``."""
        ...

    async def adelete_prefix(self, prefix: str) -> None:
        """Coroutine form of ``delete_prefix``."""
        ...


@runtime_checkable
class AsyncLeasing(Protocol):
    """Coroutine twins of :class:`Leasing`."""

    async def alease_many(self, keys: Sequence[str], token: str, ttl: float) -> list[bool]:
        """Coroutine form of ``lease_many``."""
        ...

    async def afill_leased(self, entries: Sequence[TierEntry], token: str) -> int:
        """Coroutine form of ``fill_leased``."""
        ...

    async def arelease(self, keys: Sequence[str], token: str) -> None:
        """Coroutine form of ``release``."""
        ...


@runtime_checkable
class AsyncJournaling(Protocol):
    """Coroutine twins of :class:`Journaling`."""

    async def ajournal_put(self, journal: str, seq_key: str, records: Sequence[tuple[str, bytes]],
                           entries: Sequence[TierEntry], limit: int,
                           announce: tuple[str, bytes, int] | None = None) -> bool:
        """Coroutine form of ``journal_put``."""
        ...

    async def ajournal_get(self, journal: str, fields: Sequence[str]) -> list[bytes | None]:
        """Coroutine form of ``journal_get``."""
        ...

    async def ajournal_read(self, journal: str, count: int) -> dict[str, bytes]:
        """Coroutine form of ``journal_read``."""
        ...

    async def ajournal_ack(self, journal: str, entries: Mapping[str, bytes],
                           move_to: str | None = None) -> int:
        """Coroutine form of ``journal_ack``."""
        ...

    async def ajournal_restore(self, journal: str, dead: str, fields: Sequence[str]) -> int:
        """Coroutine form of ``journal_restore``."""
        ...

    async def atry_lock(self, key: str, token: str, lease: float) -> bool:
        """Coroutine form of ``try_lock``."""
        ...

    async def aunlock(self, key: str, token: str) -> None:
        """Coroutine form of ``unlock``."""
        ...


@runtime_checkable
class AsyncVersioning(Protocol):
    """Coroutine twins of :class:`Versioning`."""

    async def abump_version(self, key: str) -> int:
        """Coroutine form of ``bump_version``."""
        ...

    async def aread_version(self, key: str) -> int:
        """Coroutine form of ``read_version``."""
        ...


@runtime_checkable
class AsyncClosing(Protocol):
    """A tier whose coroutine clients are closed by ``AsyncCache.close``."""

    async def aclose(self) -> None:
        """Close the coroutine clients; idempotent."""
        ...
