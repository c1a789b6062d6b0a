"""RedisTier: the shared L2, on redis-py (or an embedded fakeredis server)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from .._engine.ops import Plan, arun, run
from .._types import seconds
from ..errors import ConfigurationError, TierError
from ..keys import MAX_KEY_LENGTH, hash_long_key
from ..tiers.base import Hit, TierEntry, Undecodable
from . import plans
from .connection import DEFAULT_TIMEOUT, REDIS_ERRORS, Breaker, Connection
from .envelope import PLAIN, open_many, open_one
from .names import redis_key
from .plans import SCAN_BATCH, Announcement
from .tier_plans import TierPlans, client_reads, seal_entries
from .versions import KeyVersions

__all__ = ["DEFAULT_TIMEOUT", "SCAN_BATCH", "Announcement", "RedisTier"]

T = TypeVar("T")


class RedisTier:
    """A cache tier in Redis: bytes with millisecond expiry, one round trip per batch.

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://`` URL. ``None`` (and no
            ``client``) gives the embedded default: an in-process fakeredis
            server shared by every embedded tier of the process.
        client: an existing ``redis.Redis`` to use as configured (its own
            timeouts and retries apply; tiercache does not change them).
        aclient: an existing ``redis.asyncio.Redis``, for AsyncCache, when
            ``client`` is given (with a URL, or embedded, it is made for you).
        ttl: ceiling on every entry's time to live (``None``: none).
        timeout: seconds any one call may take, connecting included; redis-py's
            own retries are off, so a call fails within it.
        name: label in stats.
        failure_threshold: unavailable answers in a row that open the
            circuit breaker (calls then fail fast instead of waiting).
        cooldown: seconds the breaker stays open before a PING probes.

    Failures of the client arrive as :class:`TierUnavailable` (timeouts,
    refused or dropped connections) or :class:`TierError` (anything else).

    With a URL, reads (GET, MGET) go over a few connections the tier keeps
    itself, made like the pool's, instead of through ``client.get``: redis-py's
    per-command pool checkout, retry wrapper and observability hooks cost
    about as much as a loopback round trip. They do not show in redis-py's
    own metrics; ``stats()`` counts them. See ``tiercache/redis/direct.py``.
    """

    serialized = True

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        aclient: Any = None,
        ttl: float | timedelta | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        name: str = "redis",
        failure_threshold: int = 3,
        cooldown: float = 0.5,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.timeout = seconds(timeout, "timeout")
        self.ttl = seconds(ttl)
        self.name = name
        self.wall_clock = wall_clock
        """Unix time, for the envelopes' absolute expiry (Redis expires by its own clock)."""
        if not isinstance(failure_threshold, int) or failure_threshold < 1:
            raise ConfigurationError(
                f"failure_threshold must be a positive int, got {failure_threshold!r}"
            )
        self.connection = Connection(url, client, aclient, self.timeout)
        """The clients this tier's operations run on (see commands.py)."""
        self.is_embedded = self.connection.is_embedded
        # Single reads skip redis-py's per-command machinery (see direct.py).
        self._direct = self.connection.direct_reads()
        self._send_read = client_reads(self.connection) if self._direct is None else self._direct
        cooldown = seconds(cooldown, "cooldown") or 0.5
        self._breaker = Breaker(failure_threshold, cooldown, self._ping, self)
        self._closed = False
        self._ops = TierPlans(self)

    @classmethod
    def embedded(cls, *, ttl: float | timedelta | None = None, name: str = "redis") -> RedisTier:
        """The embedded default: a tier on the process's in-process fakeredis server."""
        return cls(ttl=ttl, name=name)

    def __repr__(self) -> str:
        return f"RedisTier({self.connection.describe()}, ttl={self.ttl}, timeout={self.timeout})"

    @property
    def client(self) -> Any:
        """The sync ``redis.Redis`` client (also the invalidation bus's publisher)."""
        return self.connection.client

    @client.setter
    def client(self, client: Any) -> None:
        self.connection.client = client

    @property
    def aclient(self) -> Any:
        """The redis.asyncio client of the running event loop, created on first use."""
        return self.connection.aclient

    # -- the circuit breaker ---------------------------------------------------

    @property
    def available(self) -> bool:
        """False while the circuit breaker is open."""
        return not self._breaker.open_until

    @property
    def failure_threshold(self) -> int:
        """Unavailable answers in a row that open the breaker."""
        return self._breaker.threshold

    @property
    def cooldown(self) -> float:
        """Seconds the breaker stays open before a PING probes."""
        return self._breaker.cooldown

    @property
    def breaker_opened(self) -> int:
        """Times the breaker opened."""
        return self._breaker.opened

    @property
    def recoveries(self) -> int:
        """Times a probe found the server back and closed the breaker."""
        return self._breaker.recoveries

    @property
    def _failures(self) -> int:
        # Unavailable answers in a row; the fault tests watch it.
        return self._breaker.failures

    def _ping(self) -> bool:
        return bool(self.connection.client.ping())

    # -- running plans: the named API the versioned view shares ----------------

    # execute, aexecute, read and aget_many are Breaker.guard written out: its
    # context manager costs four Python frames a call, which the write-back bar
    # (one EVALSHA round trip) and the L2 hit bars (one GET) notice.

    def execute(self, plan: Plan[T], what: str) -> T:
        """Drive ``plan`` with ``ops.run``, behind the breaker; errors as TierError."""
        breaker = self._breaker
        if breaker.open_until:
            breaker.gate(what)
        try:
            result = run(plan)
        except REDIS_ERRORS as exc:
            raise breaker.failure(exc, what) from exc
        breaker.failures = 0
        return result

    async def aexecute(self, plan: Plan[T], what: str) -> T:
        """Drive ``plan`` with ``ops.arun`` on the event loop's async client, behind the breaker."""
        breaker = self._breaker
        if breaker.open_until:
            breaker.gate(what)
        try:
            result = await arun(plan)
        except REDIS_ERRORS as exc:
            raise breaker.failure(exc, what) from exc
        breaker.failures = 0
        return result

    def read(self, *command: Any) -> Any:
        """One read command (GET or MGET) on the sync side: ``execute`` without a plan.

        The command goes through ``DirectReads`` when the tier has one, else
        the client's own methods (a client passed in may cache).
        """
        breaker = self._breaker
        if breaker.open_until:
            breaker.gate("GET")
        try:
            result = self._send_read(*command)
        except REDIS_ERRORS as exc:
            raise breaker.failure(exc, "GET") from exc
        breaker.failures = 0
        return result

    def seal(self, entries: Sequence[TierEntry], kind: bytes = PLAIN) -> plans.Sealed:
        """Entries as ``(redis key, envelope, px)``, TTLs capped by ``ttl``; px 0: no expiry."""
        return seal_entries(entries, kind, self.ttl, int(self.wall_clock() * 1000))

    # -- the Tier protocol -------------------------------------------------------

    def get_many(self, keys: Sequence[str], now: float) -> list[Hit | Undecodable | None]:
        # The hot path of an L2 hit: one command, no plan machinery.
        rkeys = [k if len(k) <= MAX_KEY_LENGTH else hash_long_key(k) for k in keys]
        raws = [self.read("GET", rkeys[0])] if len(rkeys) == 1 else self.read("MGET", *rkeys)
        return open_many(raws, self.wall_clock() * 1000.0)

    def get_one(self, key: str) -> Hit | Undecodable | None:
        """One key, one GET: ``Namespace.get``'s direct path after an L1 miss."""
        raw = self.read("GET", key if len(key) <= MAX_KEY_LENGTH else hash_long_key(key))
        return None if raw is None else open_one(raw, self.wall_clock() * 1000.0)

    async def aget_many(self, keys: Sequence[str], now: float) -> list[Hit | Undecodable | None]:
        # The async L2 hit: one command, no plan machinery (as get_many).
        rkeys = [redis_key(k) for k in keys]
        breaker = self._breaker
        if breaker.open_until:
            breaker.gate("GET")
        try:
            client = self.connection.aclient
            raws = [await client.get(rkeys[0])] if len(rkeys) == 1 else await client.mget(rkeys)
        except REDIS_ERRORS as exc:
            raise breaker.failure(exc, "GET") from exc
        breaker.failures = 0
        return open_many(raws, self.wall_clock() * 1000.0)

    def set_many(self, entries: Sequence[TierEntry], now: float) -> None:
        if entries:
            self.execute(plans.set_copies(self.connection, self.seal(entries)), "SET")

    async def aset_many(self, entries: Sequence[TierEntry], now: float) -> None:
        if entries:
            await self.aexecute(plans.set_copies(self.connection, self.seal(entries)), "SET")

    def delete_many(self, keys: Sequence[str]) -> None:
        if keys:
            self.execute(self._ops.delete_copies(keys), "UNLINK")

    async def adelete_many(self, keys: Sequence[str]) -> None:
        if keys:
            await self.aexecute(self._ops.delete_copies(keys), "UNLINK")

    def delete_prefix(self, prefix: str) -> None:
        """SCAN in batches and UNLINK what matches: never KEYS, never a long block."""
        self.execute(plans.delete_prefix(self.connection, prefix), "SCAN")

    async def adelete_prefix(self, prefix: str) -> None:
        await self.aexecute(plans.delete_prefix(self.connection, prefix), "SCAN")

    # -- write-back journal (a capability WriteBack looks for) --------------------

    def journal_put(self, journal: str, seq_key: str, records: Sequence[tuple[str, bytes]],
                    entries: Sequence[TierEntry], limit: int,
                    announce: Announcement | None = None) -> bool:
        """Record pending writes and set their cached copies in one atomic step.

        ``records`` are ``(field, payload)`` pairs for the journal hash;
        ``entries`` the matching cache entries (same order; an entry with
        empty data, a delete, sets nothing). ``announce``, a bus entry
        ``(stream, message, maxlen)``, is added to its stream in the same
        step. Returns False, writing nothing, when the journal would hold
        more than ``limit`` keys.
        """
        plan = self.journal_put_plan(journal, seq_key, records, entries, limit, announce)
        return self.execute(plan, "journal write")

    async def ajournal_put(self, journal: str, seq_key: str, records: Sequence[tuple[str, bytes]],
                           entries: Sequence[TierEntry], limit: int,
                           announce: Announcement | None = None) -> bool:
        plan = self.journal_put_plan(journal, seq_key, records, entries, limit, announce)
        return await self.aexecute(plan, "journal write")

    def journal_put_plan(
        self, journal: str, seq_key: str, records: Sequence[tuple[str, bytes]],
        entries: Sequence[TierEntry], limit: int, announce: Announcement | None = None,
        kind: bytes = PLAIN,
    ) -> Plan[bool]:
        """``journal_put``'s plan; ``kind`` VERSIONED stamps each copy with a new key version."""
        return self._ops.journal_put(journal, seq_key, records, entries, limit, announce, kind)

    def journal_get(self, journal: str, fields: Sequence[str]) -> list[bytes | None]:
        """The journal's pending entries for ``fields`` (None where none is pending)."""
        return self.execute(self._ops.journal_get(journal, fields), "journal read")

    async def ajournal_get(self, journal: str, fields: Sequence[str]) -> list[bytes | None]:
        return await self.aexecute(self._ops.journal_get(journal, fields), "journal read")

    def journal_read(self, journal: str, count: int) -> dict[str, bytes]:
        """Up to about ``count`` pending entries, ``{field: entry}`` (HSCAN, non-blocking)."""
        return self.execute(self._ops.journal_read(journal, count), "journal scan")

    async def ajournal_read(self, journal: str, count: int) -> dict[str, bytes]:
        return await self.aexecute(self._ops.journal_read(journal, count), "journal scan")

    def journal_ack(self, journal: str, entries: Mapping[str, bytes],
                    move_to: str | None = None) -> int:
        """Remove entries still equal to what was read; optionally keep them in ``move_to``."""
        return self.execute(self._ops.journal_ack(journal, entries, move_to), "journal ack")

    async def ajournal_ack(self, journal: str, entries: Mapping[str, bytes],
                           move_to: str | None = None) -> int:
        return await self.aexecute(self._ops.journal_ack(journal, entries, move_to), "journal ack")

    def journal_restore(self, journal: str, dead: str, fields: Sequence[str]) -> int:
        """Move entries from ``dead`` back into ``journal`` unless a newer one is pending there."""
        return self.execute(self._ops.journal_restore(journal, dead, fields), "journal restore")

    async def ajournal_restore(self, journal: str, dead: str, fields: Sequence[str]) -> int:
        plan = self._ops.journal_restore(journal, dead, fields)
        return await self.aexecute(plan, "journal restore")

    # -- read leases: fenced fills (a capability the read path looks for) ----------

    def lease_many(self, keys: Sequence[str], token: str, ttl: float) -> list[bool]:
        """Take a fill lease on each key nobody holds one on; True where taken."""
        return self.execute(self._ops.lease_many(keys, token, ttl), "lease")

    async def alease_many(self, keys: Sequence[str], token: str, ttl: float) -> list[bool]:
        return await self.aexecute(self._ops.lease_many(keys, token, ttl), "lease")

    def fill_leased(self, entries: Sequence[TierEntry], token: str) -> int:
        """Set each entry only while our lease on it is intact; returns how many were set."""
        return self.execute(self._ops.fill_leased(entries, token), "fenced fill")

    async def afill_leased(self, entries: Sequence[TierEntry], token: str) -> int:
        return await self.aexecute(self._ops.fill_leased(entries, token), "fenced fill")

    def release(self, keys: Sequence[str], token: str) -> None:
        """Give back leases still ours (keys the store did not have)."""
        self.execute(self._ops.release(keys, token), "release")

    async def arelease(self, keys: Sequence[str], token: str) -> None:
        await self.aexecute(self._ops.release(keys, token), "release")

    # -- versions and locks ----------------------------------------------------------

    def keyed_versions(self) -> KeyVersions:
        """This tier as a Versioned namespace uses it: copies carry per-key versions."""
        return KeyVersions(self)

    def bump_version(self, key: str) -> int:
        """Advance the version at ``key``; never below the server clock in microseconds."""
        return self.execute(self._ops.bump_version(key), "version bump")

    async def abump_version(self, key: str) -> int:
        return await self.aexecute(self._ops.bump_version(key), "version bump")

    def read_version(self, key: str) -> int:
        """The version at ``key``, created (from the server clock) when absent."""
        return self.execute(self._ops.read_version(key), "version read")

    async def aread_version(self, key: str) -> int:
        return await self.aexecute(self._ops.read_version(key), "version read")

    def try_lock(self, key: str, token: str, lease: float) -> bool:
        """Take a lease on ``key`` for ``lease`` seconds unless someone holds it."""
        return self.execute(self._ops.try_lock(key, token, lease), "lock")

    async def atry_lock(self, key: str, token: str, lease: float) -> bool:
        return await self.aexecute(self._ops.try_lock(key, token, lease), "lock")

    def unlock(self, key: str, token: str) -> None:
        """Release a lease, only if it is still ours."""
        self.execute(self._ops.unlock(key, token), "unlock")

    async def aunlock(self, key: str, token: str) -> None:
        await self.aexecute(self._ops.unlock(key, token), "unlock")

    # -- the rest ----------------------------------------------------------------------

    def listener(self, read_timeout: float, client_name: str | None = None) -> Any:
        """A new client of its own, for blocking reads up to ``read_timeout`` seconds.

        ``client_name`` is set on its connection (``CLIENT SETNAME``), so an
        operator can tell it apart in ``CLIENT LIST``.
        """
        return self.connection.listener(read_timeout, client_name)

    def ping(self) -> bool:
        """True when the server answers within the timeout."""
        try:
            with self._breaker.guard("PING"):
                return self._ping()
        except TierError:
            return False

    def close(self) -> None:
        """Close the direct-read connections and the sync client; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._direct is not None:
            self._direct.close()
        self.connection.close()

    async def aclose(self) -> None:
        """Close the async client (and the sync one); idempotent."""
        await self.connection.aclose()
        self.close()
