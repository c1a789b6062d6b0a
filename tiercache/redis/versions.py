"""A RedisTier as a Versioned namespace uses it: every copy carries its key's version."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..tiers.base import UNDECODABLE, Hit, TierEntry, Undecodable
from .tier import Announcement, RedisTier, _Commands, _lease_key, _version_key

_rkey = RedisTier._rkey

__all__ = ["DELETED_VERSION_TTL", "KeyVersions"]

DELETED_VERSION_TTL = 86_400.0
"""Seconds the version key of a deleted or invalidated key lives on (the copy is gone)."""

_VERSIONED = b"V"  # envelope kind: the plain header, then 16 ASCII digits of version
_HEADER = 9  # kind byte and expiry, as in every envelope (see redis._ENVELOPE)
_STAMPED = _HEADER + 16


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

    # -- reads: copy and version in one MGET ----------------------------------

    def get_one(self, key: str) -> Hit | Undecodable | None:
        tier = self._tier
        rkey = _rkey(key)
        copy, version = tier._read("MGET", rkey, _version_key(rkey))
        return _opened(copy, version, tier._wall_clock() * 1000.0)

    def get_many(self, keys: Sequence[str], now: float) -> list[Hit | Undecodable | None]:
        tier = self._tier
        raws = tier._read("MGET", *_pairs(keys))
        return _opened_all(raws, tier._wall_clock() * 1000.0)

    async def aget_many(self, keys: Sequence[str], now: float) -> list[Hit | Undecodable | None]:
        tier = self._tier
        with tier._errors("GET"):
            raws = await tier.aclient.mget(_pairs(keys))
        return _opened_all(raws, tier._wall_clock() * 1000.0)

    # -- writes: a new version, with the copy, in one script -------------------

    def set_many(self, entries: Sequence[TierEntry], now: float) -> None:
        self._tier._run(self._set_many(entries), "SET")

    async def aset_many(self, entries: Sequence[TierEntry], now: float) -> None:
        await self._tier._arun(self._set_many(entries), "SET")

    def _set_many(self, entries: Sequence[TierEntry]) -> _Commands[None]:
        if not entries:
            return
        keys: list[str] = []
        args: list[Any] = []
        for rkey, blob, px in self._tier._sealed(entries, _VERSIONED):
            keys += [_lease_key(rkey), rkey, _version_key(rkey)]
            args += [blob, px]
        yield ("script", "vset", tuple(keys), {"args": args})

    def delete_many(self, keys: Sequence[str]) -> None:
        self._tier._run(self._delete_many(keys), "UNLINK")

    async def adelete_many(self, keys: Sequence[str]) -> None:
        await self._tier._arun(self._delete_many(keys), "UNLINK")

    def _delete_many(self, keys: Sequence[str]) -> _Commands[None]:
        if not keys:
            return
        px = int(DELETED_VERSION_TTL * 1000)
        triples: list[str] = []
        args: list[Any] = []
        for key in keys:
            rkey = _rkey(key)
            triples += [_lease_key(rkey), rkey, _version_key(rkey)]
            args += [b"", px]
        yield ("script", "vset", tuple(triples), {"args": args})

    def delete_prefix(self, prefix: str) -> None:
        """The copies under ``prefix``, then their version keys (SCAN in batches, as ever)."""
        self._tier.delete_prefix(prefix)
        self._tier.delete_prefix(_version_key(prefix))

    async def adelete_prefix(self, prefix: str) -> None:
        await self._tier.adelete_prefix(prefix)
        await self._tier.adelete_prefix(_version_key(prefix))

    def fill_leased(self, entries: Sequence[TierEntry], token: str) -> int:
        return self._tier._run(self._fill_leased(entries, token), "fenced fill")

    async def afill_leased(self, entries: Sequence[TierEntry], token: str) -> int:
        return await self._tier._arun(self._fill_leased(entries, token), "fenced fill")

    def _fill_leased(self, entries: Sequence[TierEntry], token: str) -> _Commands[int]:
        keys: list[str] = []
        args: list[Any] = [token]
        for rkey, blob, px in self._tier._sealed(entries, _VERSIONED):
            keys += [_lease_key(rkey), rkey, _version_key(rkey)]
            args += [blob, px]
        filled = yield ("script", "vfill", tuple(keys), {"args": args})
        return int(filled)

    def journal_put(self, journal: str, seq_key: str, records: Sequence[tuple[str, bytes]],
                    entries: Sequence[TierEntry], limit: int,
                    announce: Announcement | None = None) -> bool:
        return self._tier._run(
            self._tier._journal_put(journal, seq_key, records, entries, limit, _VERSIONED,
                                    announce),
            "journal write",
        )

    async def ajournal_put(self, journal: str, seq_key: str, records: Sequence[tuple[str, bytes]],
                           entries: Sequence[TierEntry], limit: int,
                           announce: Announcement | None = None) -> bool:
        return await self._tier._arun(
            self._tier._journal_put(journal, seq_key, records, entries, limit, _VERSIONED,
                                    announce),
            "journal write",
        )


def _pairs(keys: Sequence[str]) -> list[str]:
    out: list[str] = []
    for key in keys:
        rkey = _rkey(key)
        out += [rkey, _version_key(rkey)]
    return out


def _opened_all(raws: Sequence[bytes | None], now_ms: float) -> list[Hit | Undecodable | None]:
    return [_opened(raws[i], raws[i + 1], now_ms) for i in range(0, len(raws), 2)]


def _opened(copy: bytes | None, version: bytes | None, now_ms: float) -> Hit | Undecodable | None:
    """A copy's payload and remaining TTL if it carries the key's current version."""
    if copy is None or version is None:
        return None  # no copy, or no current version: nothing is reachable
    if copy[:1] != _VERSIONED or len(copy) < _STAMPED:
        # A plain envelope holds no version (written before a swap to Versioned): unreachable.
        return None if copy[:1] == b"T" else UNDECODABLE
    if copy[_HEADER:_STAMPED] != version:
        return None  # an older version's copy
    expires_ms = int.from_bytes(copy[1:_HEADER], "big")
    if expires_ms == 0:
        return (copy[_STAMPED:], None)
    remaining = (expires_ms - now_ms) / 1000.0
    return (copy[_STAMPED:], remaining) if remaining > 0 else None
