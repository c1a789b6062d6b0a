"""What RedisTier sends, written once: sealed copies, its plans for both twins, plain reads."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._engine.ops import Plan
from ..keys import MAX_KEY_LENGTH, hash_long_key
from ..tiers.base import TierEntry
from . import envelope, plans, scripts
from .connection import Connection
from .envelope import PLAIN
from .names import redis_key
from .plans import Announcement, Sealed

if TYPE_CHECKING:
    from .tier import RedisTier

__all__ = ["TierPlans", "client_reads", "seal_entries"]


def seal_entries(
    entries: Sequence[TierEntry], kind: bytes, ceiling: float | None, now_ms: int
) -> Sealed:
    """Entries as ``(redis key, envelope, px)``, TTLs capped by ``ceiling``; px 0: no expiry."""
    wrap = envelope.seal
    out = []
    for key, data, ttl, _size in entries:
        if ceiling is not None and (ttl is None or ttl > ceiling):
            ttl = ceiling
        px = 0 if ttl is None else max(1, int(ttl * 1000))
        rkey = key if len(key) <= MAX_KEY_LENGTH else hash_long_key(key)  # redis_key, inlined
        out.append((rkey, wrap(kind, data, now_ms + px if px else 0), px))
    return out


def client_reads(connection: Connection) -> Callable[..., Any]:
    """GET or MGET through the client's own methods, for a tier without direct reads.

    A client passed in may cache; the client is looked up at each call, as
    ``RedisTier.client`` may be replaced.
    """

    def read(*command: Any) -> Any:
        if command[0] == "GET":
            return connection.client.get(command[1])
        return connection.client.mget(command[1:])  # may want ``keys=``, as redis-py passes them

    return read


class TierPlans:
    """The copies, write-back journal, fill leases, key versions and locks of a tier, as plans.

    RedisTier's sync and async twins run the same plan, one with ``execute``
    and the other with ``aexecute``: each plan is built here, once for both.
    Copies are sealed as ``RedisTier.seal`` seals them, without its call (the
    write-back bar counts frames).
    """

    def __init__(self, tier: RedisTier) -> None:
        self._tier = tier
        self._conn = tier.connection

    # -- copies ---------------------------------------------------------------------

    def delete_copies(self, keys: Sequence[str]) -> Plan[None]:
        """UNLINK the copies and their leases."""
        return plans.delete_copies(self._conn, [redis_key(k) for k in keys])

    # -- write-back journal --------------------------------------------------------

    def journal_put(
        self, journal: str, seq_key: str, records: Sequence[tuple[str, bytes]],
        entries: Sequence[TierEntry], limit: int, announce: Announcement | None, kind: bytes,
    ) -> Plan[bool]:
        """Record pending writes and set their copies; VERSIONED ``kind`` stamps new versions."""
        deletes = [not entry[1] for entry in entries]
        tier = self._tier
        sealed = seal_entries(entries, kind, tier.ttl, int(tier.wall_clock() * 1000))
        return plans.journal_put(self._conn, journal, seq_key, records, sealed, deletes, limit,
                                 announce, versioned=kind != PLAIN)

    def journal_get(self, journal: str, fields: Sequence[str]) -> Plan[list[bytes | None]]:
        """The journal's pending entries for ``fields`` (None where none is pending)."""
        return plans.journal_get(self._conn, journal, fields)

    def journal_read(self, journal: str, count: int) -> Plan[dict[str, bytes]]:
        """Up to about ``count`` pending entries, ``{field: entry}`` (HSCAN, non-blocking)."""
        return plans.journal_read(self._conn, journal, count)

    def journal_ack(
        self, journal: str, entries: Mapping[str, bytes], move_to: str | None
    ) -> Plan[int]:
        """Remove entries still equal to what was read; optionally keep them in ``move_to``."""
        return plans.journal_ack(self._conn, journal, entries, move_to)

    def journal_restore(self, journal: str, dead: str, fields: Sequence[str]) -> Plan[int]:
        """Move entries from ``dead`` back into ``journal`` unless a newer one is pending there."""
        return plans.journal_restore(self._conn, journal, dead, fields)

    # -- read leases: fenced fills ---------------------------------------------------

    def lease_many(self, keys: Sequence[str], token: str, ttl: float) -> Plan[list[bool]]:
        """Take a fill lease on each key nobody holds one on; True where taken."""
        return plans.lease_many(self._conn, [redis_key(k) for k in keys], token, _px(ttl))

    def fill_leased(self, entries: Sequence[TierEntry], token: str) -> Plan[int]:
        """Set each entry only while our lease on it is intact; how many were set."""
        tier = self._tier
        sealed = seal_entries(entries, PLAIN, tier.ttl, int(tier.wall_clock() * 1000))
        return plans.fill_leased(self._conn, sealed, token)

    def release(self, keys: Sequence[str], token: str) -> Plan[None]:
        """Give back leases still ours (keys the store did not have)."""
        return plans.release(self._conn, [redis_key(k) for k in keys], token)

    # -- versions and locks ------------------------------------------------------------

    def bump_version(self, key: str) -> Plan[int]:
        """Advance the version at ``key``; never below the server clock in microseconds."""
        return plans.run_script(self._conn, scripts.BUMP, [key], [])

    def read_version(self, key: str) -> Plan[int]:
        """The version at ``key``, created (from the server clock) when absent."""
        return plans.run_script(self._conn, scripts.READ_VERSION, [key], [])

    def try_lock(self, key: str, token: str, lease: float) -> Plan[bool]:
        """Take a lease on ``key`` for ``lease`` seconds unless someone holds it."""
        return plans.try_lock(self._conn, key, token, _px(lease))

    def unlock(self, key: str, token: str) -> Plan[int]:
        """Release a lease, only if it is still ours."""
        return plans.run_script(self._conn, scripts.UNLOCK, [key], [token])


def _px(duration: float) -> int:
    """Seconds as a PX argument: whole milliseconds, at least one."""
    return max(1, int(duration * 1000))
