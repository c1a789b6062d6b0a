"""The Tier protocol: one layer of cache that stores entries with TTLs and evicts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

__all__ = ["UNDECODABLE", "Hit", "Tier", "TierEntry", "Undecodable"]

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
