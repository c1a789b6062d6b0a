"""Versioned: every copy carries its key's version and its namespace's; a bump makes old copies
unreachable."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_VERSIONED_TTL", "Versioned"]

DEFAULT_VERSIONED_TTL = 86_400.0
"""Seconds an entry lives under Versioned when no TTL is given: old versions must age out."""


@dataclass(frozen=True)
class Versioned:
    """Every copy carries a version: its key's, and its namespace's.

    Per key: in Redis each copy is stamped with its key's version, kept in
    a version key beside it, and a read serves the copy only while the two
    agree. A write, delete or invalidate gives the key a new version in the
    same atomic step that replaces or removes the copy, so an older copy is
    never read again, even one put back late (a writer paused past its
    lease). Other processes drop their L1 copy when the change reaches them
    on the invalidation bus.

    Per namespace: keys are read through the namespace's current version
    (``users:v17:...``). ``invalidate_all`` bumps it: one Redis command,
    whatever the namespace's size; the old copies are never read again and
    expire by their TTL (``ttl``, one day by default, since unreachable
    entries must still leave). Bumps travel on the bus; a process that
    missed one re-reads the version when the bus reports a gap.

    Versions come from the Redis server's clock in microseconds and only
    ever grow, so a version key lost to eviction, FLUSHALL or a restart never
    makes old copies readable again (a copy whose key version is gone is a
    miss). The cost: one version key per cached key, and reads that fetch
    copy and version together (one MGET instead of one GET).
    """

    ttl: float | None = DEFAULT_VERSIONED_TTL
    broadcast: bool = True
    versioned: bool = True
