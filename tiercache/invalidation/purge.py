"""Purge: deletes and invalidations remove the key from every tier, everywhere."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Purge"]


@dataclass(frozen=True)
class Purge:
    """Correct on write: ``delete`` and ``invalidate`` remove the key from every tier.

    Every write, delete and invalidate is announced on the invalidation bus
    (a Redis stream; see :mod:`tiercache.redis.bus`) so that other processes drop
    their L1 copies. The writer's own copies follow the write policy.
    """

    ttl: float | None = None
    broadcast: bool = True
    versioned: bool = False
