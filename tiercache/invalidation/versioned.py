"""Versioned: cached keys carry the namespace's version; a bump makes every old copy unreachable."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_VERSIONED_TTL", "Versioned"]

DEFAULT_VERSIONED_TTL = 86_400.0
"""Seconds an entry lives under Versioned when no TTL is given: old versions must age out."""


@dataclass(frozen=True)
class Versioned:
    """Copies are read through the namespace's current version (``users:v17:...``).

    ``invalidate_all`` bumps the version: one Redis command, whatever the
    namespace's size; the old copies are never read again and expire by
    their TTL (``ttl``, one day by default, since unreachable entries must
    still leave). Versions come from the Redis server's clock in
    microseconds and only ever grow, so a version key lost to eviction,
    FLUSHALL or a restart never makes old copies readable again. Bumps
    travel on the invalidation bus; a process that missed one re-reads the
    version when the bus reports a gap. Single keys behave as under Purge:
    a write, delete or invalidate tells other processes to drop their L1 copy.
    """

    ttl: float | None = DEFAULT_VERSIONED_TTL
    broadcast: bool = True
    versioned: bool = True
