"""Per-key versions: RedisTier as a Versioned namespace uses it, each copy carrying its version."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._engine.ops import Plan
from ..tiers.base import Hit, TierEntry, Undecodable
from . import plans
from .envelope import VERSIONED, open_versioned, open_versioned_pairs
from .names import redis_key, version_key

if TYPE_CHECKING:  # the tier makes this view (keyed_versions); only its type is needed here
    from .tier import RedisTier

__all__ = ["DELETED_VERSION_TTL", "KeyVersions"]

DELETED_VERSION_TTL = 86_400.0
"""Seconds the version key of a deleted or invalidated key lives on (the copy is gone)."""


class KeyVersions:
    """The per-namespace face of a shared :class:`RedisTier` under Versioned.

    Each cached key has a version key (``prefix:#kv:...``) beside its copy,
    and each copy carries the version it was written under. Every write,
    delete or invalidation gives the key a new version in the same atomic
    script that replaces or removes the copy; reads fetch copy and version
    in one MGET and serve the copy only if the two agree. An older copy is
    therefore unreachable even if it is still in Redis: one put back late by
    a paused writer, or one whose removal never ran. Versions come from the
    Redis server's clock (microseconds) and only grow, so a version key lost
    to eviction or a restart never makes an older copy current again: a
    copy without its version key is a miss, and the next fill starts a new
    version.

    Everything else (leases, journal reads, locks, the namespace version)
    is the tier's own; attribute access falls through to it.
    """

    def __init__(self, tier: RedisTier) -> None:
        self._tier = tier
        self.name = tier.name
        self.serialized = True
        self.ttl = tier.ttl

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tier, name)

    def __repr__(self) -> str:
        return f"KeyVersions({self._tier!r})"

    # -- reads: copy and version in one MGET ------------------------------------

    def get_one(self, key: str) -> Hit | Undecodable | None:
        tier = self._tier
        rkey = redis_key(key)
        copy, version = tier.read("MGET", rkey, version_key(rkey))
        return open_versioned(copy, version, tier.wall_clock() * 1000.0)

    def get_many(self, keys: Sequence[str], now: float) -> list[Hit | Undecodable | None]:
        tier = self._tier
        raws = tier.read("MGET", *_pairs(keys))
        return open_versioned_pairs(raws, tier.wall_clock() * 1000.0)

    async def aget_many(self, keys: Sequence[str], now: float) -> list[Hit | Undecodable | None]:
        tier = self._tier
        raws = await tier.aexecute(plans.read(tier.connection, _pairs(keys)), "GET")
        return open_versioned_pairs(raws, tier.wall_clock() * 1000.0)

    # -- writes: a new version, with the copy, in one script ----------------------

    def set_many(self, entries: Sequence[TierEntry], now: float) -> None:
        if entries:
            sealed = self._tier.seal(entries, VERSIONED)
            self._tier.execute(plans.set_copies(self._tier.connection, sealed, True), "SET")

    async def aset_many(self, entries: Sequence[TierEntry], now: float) -> None:
        if entries:
            sealed = self._tier.seal(entries, VERSIONED)
            await self._tier.aexecute(plans.set_copies(self._tier.connection, sealed, True), "SET")

    def delete_many(self, keys: Sequence[str]) -> None:
        if keys:
            self._tier.execute(self._delete_many(keys), "UNLINK")

    async def adelete_many(self, keys: Sequence[str]) -> None:
        if keys:
            await self._tier.aexecute(self._delete_many(keys), "UNLINK")

    def _delete_many(self, keys: Sequence[str]) -> Plan[None]:
        rkeys = [redis_key(k) for k in keys]
        return plans.delete_versioned(self._tier.connection, rkeys, int(DELETED_VERSION_TTL * 1000))

    def delete_prefix(self, prefix: str) -> None:
        """The copies under ``prefix``, then their version keys (SCAN in batches, as ever)."""
        self._tier.delete_prefix(prefix)
        self._tier.delete_prefix(version_key(prefix))

    async def adelete_prefix(self, prefix: str) -> None:
        await self._tier.adelete_prefix(prefix)
        await self._tier.adelete_prefix(version_key(prefix))

    def fill_leased(self, entries: Sequence[TierEntry], token: str) -> int:
        sealed = self._tier.seal(entries, VERSIONED)
        plan = plans.fill_leased(self._tier.connection, sealed, token, versioned=True)
        return self._tier.execute(plan, "fenced fill")

    async def afill_leased(self, entries: Sequence[TierEntry], token: str) -> int:
        sealed = self._tier.seal(entries, VERSIONED)
        plan = plans.fill_leased(self._tier.connection, sealed, token, versioned=True)
        return await self._tier.aexecute(plan, "fenced fill")

    def journal_put(self, journal: str, seq_key: str, records: Sequence[tuple[str, bytes]],
                    entries: Sequence[TierEntry], limit: int,
                    announce: plans.Announcement | None = None) -> bool:
        plan = self._tier.journal_put_plan(journal, seq_key, records, entries, limit, announce,
                                           kind=VERSIONED)
        return self._tier.execute(plan, "journal write")

    async def ajournal_put(self, journal: str, seq_key: str, records: Sequence[tuple[str, bytes]],
                           entries: Sequence[TierEntry], limit: int,
                           announce: plans.Announcement | None = None) -> bool:
        plan = self._tier.journal_put_plan(journal, seq_key, records, entries, limit, announce,
                                           kind=VERSIONED)
        return await self._tier.aexecute(plan, "journal write")


def _pairs(keys: Sequence[str]) -> list[str]:
    """``copy, version key`` for each key, in order: one MGET reads both."""
    out: list[str] = []
    for key in keys:
        rkey = redis_key(key)
        out += [rkey, version_key(rkey)]
    return out
