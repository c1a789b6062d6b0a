"""RedisTier: the shared L2, on redis-py (or an embedded fakeredis server)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import struct
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .._types import seconds
from ..errors import ConfigurationError, TierError, TierUnavailable
from ..keys import MAX_KEY_LENGTH, hash_long_key
from ..tiers.base import UNDECODABLE, Hit, TierEntry, Undecodable

__all__ = ["DEFAULT_TIMEOUT", "RedisTier"]

log = logging.getLogger("tiercache.redis")

DEFAULT_TIMEOUT = 0.1
"""Seconds any one Redis call may take before the tier counts it as failed."""

ASYNC_MAX_CONNECTIONS = 16
"""Connections an AsyncCache's Redis tier opens at most; more callers wait for one."""

SCAN_BATCH = 1000
"""Keys asked for per SCAN step, and unlinked per UNLINK, by ``delete_prefix``."""

# Each value in Redis is an envelope: a version byte, the absolute expiry in
# Unix milliseconds (0: none), then the serializer's bytes. The expiry rides
# along so that one GET tells a reader how long the copy has left (backfill
# must never outlive the layer it came from) without a second command.
_ENVELOPE = struct.Struct(">cQ")
_ENVELOPE_V1 = b"T"
_HEADER = _ENVELOPE.size
_ENVELOPE_BYTE = _ENVELOPE_V1[0]
_unpack_header = _ENVELOPE.unpack_from

from .direct import DirectReads
from .scripts import SCRIPTS as _SCRIPTS

T = TypeVar("T")
Announcement = tuple[str, bytes, int]
"""A bus entry a write script adds to its stream: ``(stream, message, maxlen)``."""
_Command = tuple[str, str, tuple[Any, ...], dict[str, Any]]
"""``(kind, name, args, kwargs)``: kind "call" (a client method), "script", or "pipe"."""
_Commands = Generator[_Command, Any, T]

_embedded_lock = threading.Lock()
_embedded_server: Any = None


def _embedded_client() -> Any:
    """A client on the process's one embedded fakeredis server, created on first use."""
    global _embedded_server
    import fakeredis

    with _embedded_lock:
        if _embedded_server is None:
            _embedded_server = fakeredis.FakeServer()
        return fakeredis.FakeRedis(server=_embedded_server)


class RedisTier:
    """A cache tier in Redis: bytes with millisecond expiry, one round trip per batch.

    Args:
        url: ``redis://`` or ``rediss://`` URL. ``None`` (and no ``client``)
            gives the embedded default: an in-process fakeredis server shared
            by every embedded tier of the process.
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
    own metrics; ``stats()`` counts them. See ``tiercache/tiers/_direct.py``.
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
        if url is not None and client is not None:
            raise ConfigurationError("give RedisTier a url or a client, not both")
        self.timeout = seconds(timeout, "timeout")
        self.ttl = seconds(ttl)
        self.name = name
        self._wall_clock = wall_clock
        self.is_embedded = url is None and client is None
        if client is not None:
            self.client = client
        elif url is not None:
            if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
                raise ConfigurationError(f"not a Redis URL: {_redact(url)!r}")
            try:
                self.client = redis.Redis.from_url(
                    url,
                    socket_timeout=self.timeout,
                    socket_connect_timeout=self.timeout,
                    retry=Retry(NoBackoff(), 0),
                    health_check_interval=0,
                )
            except ValueError as exc:
                raise ConfigurationError(f"bad Redis URL {_redact(url)!r}: {exc}") from exc
        else:
            self.client = _embedded_client()
        pool = self.client.connection_pool
        # Single reads skip redis-py's per-command machinery (see _direct), on
        # the tier's own client only: a client passed in may carry a cache, a
        # pool of another kind, hooks its owner relies on.
        self._direct: DirectReads | None = (
            DirectReads(pool) if url is not None and type(pool) is redis.ConnectionPool
            and getattr(pool, "cache", None) is None else None
        )
        self._url = _redact(url) if url else None
        self._closed = False
        self._url_raw = url
        self._user_aclient: Any = aclient
        self._aclients: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        if not isinstance(failure_threshold, int) or failure_threshold < 1:
            raise ConfigurationError(f"failure_threshold must be a positive int, got {failure_threshold!r}")
        self.failure_threshold = failure_threshold
        self.cooldown: float = seconds(cooldown, "cooldown") or 0.5
        self._failures = 0
        self._open_until = 0.0
        self._probing = False
        self._breaker_lock = threading.Lock()
        self.breaker_opened = 0
        self.recoveries = 0
        self._scripts: dict[str, Any] = {}
        self._ascripts: dict[int, dict[str, Any]] = {}

    @classmethod
    def embedded(cls, *, ttl: float | timedelta | None = None, name: str = "redis") -> RedisTier:
        """The embedded default: a tier on the process's in-process fakeredis server."""
        return cls(ttl=ttl, name=name)

    def __repr__(self) -> str:
        where = "embedded" if self.is_embedded else (self._url or repr(self.client))
        return f"RedisTier({where}, ttl={self.ttl}, timeout={self.timeout})"

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Translate redis-py's exceptions at the boundary that imports it.

        Also the circuit breaker: after ``failure_threshold`` unavailable
        answers in a row the tier fails fast, without touching the network,
        for ``cooldown`` seconds; then a PING probes it, and success closes
        the breaker (counted in ``recoveries``).
        """
        if self._open_until:
            self._gate(what)
        try:
            yield
        except (redis.TimeoutError, redis.ConnectionError) as exc:
            self._failed()
            raise TierUnavailable(f"Redis {what} failed: {exc}") from exc
        except redis.RedisError as exc:
            raise TierError(f"Redis {what} failed: {exc}") from exc
        self._failures = 0

    def _failed(self) -> None:
        with self._breaker_lock:
            self._failures += 1
            if self._failures >= self.failure_threshold and not self._open_until:
                self._open_until = time.monotonic() + self.cooldown
                self.breaker_opened += 1
                log.warning("Redis tier %r unavailable: failing fast for %.2fs", self, self.cooldown)

    def _gate(self, what: str) -> None:
        """While the breaker is open: fail fast, or probe once the cooldown is over."""
        with self._breaker_lock:
            now = time.monotonic()
            if now < self._open_until or self._probing:
                raise TierUnavailable(f"Redis {what} skipped: circuit open")
            self._probing = True
        try:
            healthy = bool(self.client.ping())
        except redis.RedisError:
            healthy = False
        with self._breaker_lock:
            self._probing = False
            if not healthy:
                self._open_until = time.monotonic() + self.cooldown
                raise TierUnavailable(f"Redis {what} skipped: circuit open, probe failed")
            self._open_until = 0.0
            self._failures = 0
            self.recoveries += 1
        log.warning("Redis tier %r answers again", self)

    @property
    def available(self) -> bool:
        """False while the circuit breaker is open."""
        return not self._open_until

    # Each operation is written once, as a generator of client commands
    # (see _Command), and driven by ``_run`` on the sync client or ``_arun``
    # on the redis.asyncio one: Cache and AsyncCache share every line of it.

    def _run(self, plan: _Commands[T], what: str) -> T:
        client = self.client
        with self._errors(what):
            try:
                command = next(plan)
                while True:
                    command = plan.send(self._perform(client, command))
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]

    async def _arun(self, plan: _Commands[T], what: str) -> T:
        client = self.aclient
        with self._errors(what):
            try:
                command = next(plan)
                while True:
                    result = self._perform(client, command)
                    if inspect.isawaitable(result):
                        result = await result
                    command = plan.send(result)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]

    def _perform(self, client: Any, command: _Command) -> Any:
        kind, name, args, kwargs = command
        if kind == "call":
            return getattr(client, name)(*args, **kwargs)
        if kind == "script":
            return self._script(client, name)(keys=args, args=kwargs["args"])
        if kind == "pipe":
            pipe = client.pipeline(transaction=False)
            for cmd_name, cmd_args, cmd_kwargs in args:
                getattr(pipe, cmd_name)(*cmd_args, **cmd_kwargs)
            return pipe.execute()
        raise AssertionError(f"unknown command kind {kind}")  # pragma: no cover

    def _script(self, client: Any, name: str) -> Any:
        cache = self._scripts if client is self.client else self._ascripts.setdefault(id(client), {})
        script = cache.get(name)
        if script is None:
            script = cache[name] = client.register_script(_SCRIPTS[name])
        return script

    @property
    def aclient(self) -> Any:
        """The redis.asyncio client of the running event loop, created on first use.

        An async client belongs to the loop it first ran on, so each loop
        (successive ``asyncio.run`` calls, per-test loops) gets its own.
        """
        if self._user_aclient is not None:
            return self._user_aclient
        loop = asyncio.get_running_loop()
        client = self._aclients.get(loop)
        if client is None:
            client = self._aclients[loop] = self._new_aclient()
        return client

    def _new_aclient(self) -> Any:
        if self.is_embedded:
            import fakeredis

            _embedded_client()  # make sure the shared server exists
            return fakeredis.FakeAsyncRedis(server=_embedded_server)
        if self._url_raw is None:
            raise ConfigurationError(
                "this RedisTier wraps a sync client; give it aclient= for AsyncCache"
            )
        import redis.asyncio

        # A bounded pool: a burst of coroutines shares ASYNC_MAX_CONNECTIONS
        # connections instead of opening one each (a connect storm that trips
        # timeouts on a busy host), waiting at most `timeout` for one.
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            self._url_raw,
            max_connections=ASYNC_MAX_CONNECTIONS,
            timeout=self.timeout,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            retry=redis.asyncio.retry.Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        return redis.asyncio.Redis(connection_pool=pool)

    # -- the Tier protocol ----------------------------------------------------

    def get_many(self, keys: Sequence[str], now: float) -> list[Hit | Undecodable | None]:
        # The hot path of an L2 hit: one command, no plan machinery.
        rkeys = [k if len(k) <= MAX_KEY_LENGTH else hash_long_key(k) for k in keys]
        if len(rkeys) == 1:
            return self._opened([self._read("GET", rkeys[0])])
        return self._opened(self._read("MGET", *rkeys))

    def get_one(self, key: str) -> Hit | Undecodable | None:
        """One key, one GET: ``Namespace.get``'s direct path after an L1 miss."""
        raw = self._read("GET", key if len(key) <= MAX_KEY_LENGTH else hash_long_key(key))
        return None if raw is None else _open(raw, self._wall_clock() * 1000.0)

    def _read(self, *command: Any) -> Any:
        """One read command (GET or MGET) with ``_errors``' translation and breaker inlined.

        A context manager costs about a microsecond, which an L2 hit measured
        against a raw GET cannot spare. The command goes through
        ``DirectReads`` when the tier has one, else the client.
        """
        if self._open_until:
            self._gate("GET")
        direct = self._direct
        try:
            if direct is not None:
                result = direct(*command)
            elif command[0] == "GET":
                result = self.client.get(command[1])  # the client's own methods: its cache
            else:  # may want ``keys=``, as redis-py passes them
                result = self.client.mget(command[1:])
        except (redis.TimeoutError, redis.ConnectionError) as exc:
            self._failed()
            raise TierUnavailable(f"Redis GET failed: {exc}") from exc
        except redis.RedisError as exc:
            raise TierError(f"Redis GET failed: {exc}") from exc
        self._failures = 0
        return result

    async def aget_many(self, keys: Sequence[str], now: float) -> list[Hit | Undecodable | None]:
        rkeys = [k if len(k) <= MAX_KEY_LENGTH else hash_long_key(k) for k in keys]
        with self._errors("GET"):
            client = self.aclient
            raws = [await client.get(rkeys[0])] if len(rkeys) == 1 else await client.mget(rkeys)
        return self._opened(raws)

    def _opened(self, raws: Sequence[bytes | None]) -> list[Hit | Undecodable | None]:
        now_ms = self._wall_clock() * 1000.0
        out: list[Hit | Undecodable | None] = []
        append = out.append
        for raw in raws:
            if raw is None:
                append(None)
            elif len(raw) < _HEADER or raw[0] != _ENVELOPE_BYTE:
                append(UNDECODABLE)
            else:
                expires_ms = _unpack_header(raw)[1]
                if not expires_ms:
                    append((raw[_HEADER:], None))
                else:
                    remaining = (expires_ms - now_ms) / 1000.0
                    append((raw[_HEADER:], remaining) if remaining > 0 else None)
        return out

    def set_many(self, entries: Sequence[TierEntry], now: float) -> None:
        self._run(self._set_many(entries), "SET")

    async def aset_many(self, entries: Sequence[TierEntry], now: float) -> None:
        await self._arun(self._set_many(entries), "SET")

    def _set_many(self, entries: Sequence[TierEntry]) -> _Commands[None]:
        if not entries:
            return
        # One script sets the copies and takes away any reader's lease on
        # them, atomically: a read that loaded before this write can no
        # longer fill over it (see fill_leased).
        keys: list[str] = []
        args: list[Any] = []
        for rkey, blob, px in self._sealed(entries):
            keys += [_lease_key(rkey), rkey]
            args += [blob, px]
        yield ("script", "set", tuple(keys), {"args": args})

    def _sealed(
        self, entries: Sequence[TierEntry], kind: bytes = _ENVELOPE_V1
    ) -> list[tuple[str, bytes, int]]:
        """Entries as ``(redis key, envelope, px)``; px 0 means no expiry.

        ``kind`` b"V" marks a versioned copy: the script that stores it splices
        the key's version in after the header (see tiers/_versioned.py).
        """
        ceiling = self.ttl
        now_ms = int(self._wall_clock() * 1000)
        out = []
        for key, data, ttl, _size in entries:
            if ceiling is not None and (ttl is None or ttl > ceiling):
                ttl = ceiling
            px = 0 if ttl is None else max(1, int(ttl * 1000))
            header = _ENVELOPE.pack(kind, now_ms + px if px else 0)
            out.append((key if len(key) <= MAX_KEY_LENGTH else hash_long_key(key), header + data, px))
        return out

    def delete_many(self, keys: Sequence[str]) -> None:
        self._run(self._delete_many(keys), "UNLINK")

    async def adelete_many(self, keys: Sequence[str]) -> None:
        await self._arun(self._delete_many(keys), "UNLINK")

    def _delete_many(self, keys: Sequence[str]) -> _Commands[None]:
        if keys:
            rkeys = [k if len(k) <= MAX_KEY_LENGTH else hash_long_key(k) for k in keys]
            # Deleting a key also takes away any reader's lease on it (see fill_leased).
            yield ("call", "unlink", (*rkeys, *map(_lease_key, rkeys)), {})

    def delete_prefix(self, prefix: str) -> None:
        """SCAN in batches and UNLINK what matches: never KEYS, never a long block."""
        self._run(self._delete_prefix(prefix), "SCAN")

    async def adelete_prefix(self, prefix: str) -> None:
        await self._arun(self._delete_prefix(prefix), "SCAN")

    def _delete_prefix(self, prefix: str) -> _Commands[None]:
        pattern = _glob_escape(prefix) + "*"
        cursor = 0
        for _step in range(10_000_000):  # bounded by the keyspace; SCAN ends at cursor 0
            cursor, keys = yield ("call", "scan", (cursor,), {"match": pattern, "count": SCAN_BATCH})
            if keys:
                yield ("call", "unlink", tuple(keys), {})
            if int(cursor) == 0:
                return

    # -- write-back journal (a capability WriteBack looks for) ----------------

    def journal_put(
        self,
        journal: str,
        seq_key: str,
        records: Sequence[tuple[str, bytes]],
        entries: Sequence[TierEntry],
        limit: int,
        announce: Announcement | None = None,
    ) -> bool:
        """Record pending writes and set their cached copies in one atomic step.

        ``records`` are ``(field, payload)`` pairs for the journal hash;
        ``entries`` the matching cache entries (same order; an entry with
        empty data, a delete, sets nothing). ``announce``, a bus entry
        ``(stream, message, maxlen)``, is added to its stream in the same
        step. Returns False, writing nothing, when the journal would hold
        more than ``limit`` keys.
        """
        return self._run(self._journal_put(journal, seq_key, records, entries, limit,
                                           announce=announce), "journal write")

    async def ajournal_put(
        self,
        journal: str,
        seq_key: str,
        records: Sequence[tuple[str, bytes]],
        entries: Sequence[TierEntry],
        limit: int,
        announce: Announcement | None = None,
    ) -> bool:
        return await self._arun(
            self._journal_put(journal, seq_key, records, entries, limit, announce=announce),
            "journal write",
        )

    def _journal_put(
        self,
        journal: str,
        seq_key: str,
        records: Sequence[tuple[str, bytes]],
        entries: Sequence[TierEntry],
        limit: int,
        kind: bytes = _ENVELOPE_V1,
        announce: Announcement | None = None,
    ) -> _Commands[bool]:
        keys = [journal, seq_key]
        args: list[Any] = []
        for (field_, payload), (entry, (rkey, blob, px)) in zip(
            records, zip(entries, self._sealed(entries, kind))
        ):
            keys.append(rkey)
            args += [field_, payload, blob if entry[1] else b"", px]
        copies = keys[2:]
        keys += [_lease_key(k) for k in copies]
        if kind != _ENVELOPE_V1:  # versioned copies: their version keys follow
            keys += [_version_key(k) for k in copies]
        args.append(limit)
        if announce is not None:
            stream, message, maxlen = announce
            keys.append(stream)
            args += [message, maxlen]
        done = yield ("script", "put", tuple(keys), {"args": args})
        return int(done) >= 0

    def journal_get(self, journal: str, fields: Sequence[str]) -> list[bytes | None]:
        """The journal's pending entries for ``fields`` (None where none is pending)."""
        return self._run(self._journal_get(journal, fields), "journal read")

    async def ajournal_get(self, journal: str, fields: Sequence[str]) -> list[bytes | None]:
        return await self._arun(self._journal_get(journal, fields), "journal read")

    def _journal_get(self, journal: str, fields: Sequence[str]) -> _Commands[list[bytes | None]]:
        found = yield ("call", "hmget", (journal, list(fields)), {})
        return list(found)

    def journal_read(self, journal: str, count: int) -> dict[str, bytes]:
        """Up to about ``count`` pending entries, ``{field: entry}`` (HSCAN, non-blocking)."""
        return self._run(self._journal_read(journal, count), "journal scan")

    async def ajournal_read(self, journal: str, count: int) -> dict[str, bytes]:
        return await self._arun(self._journal_read(journal, count), "journal scan")

    def _journal_read(self, journal: str, count: int) -> _Commands[dict[str, bytes]]:
        out: dict[str, bytes] = {}
        cursor = 0
        for _step in range(10_000_000):  # bounded by the hash; HSCAN ends at cursor 0
            cursor, chunk = yield ("call", "hscan", (journal, cursor), {"count": count})
            for field_, entry in chunk.items():
                out[field_.decode() if isinstance(field_, bytes) else field_] = entry
            if int(cursor) == 0 or len(out) >= count:
                break
        return out

    def journal_ack(
        self, journal: str, entries: Mapping[str, bytes], move_to: str | None = None
    ) -> int:
        """Remove entries still equal to what was read; optionally keep them in ``move_to``."""
        return self._run(self._journal_ack(journal, entries, move_to), "journal ack")

    async def ajournal_ack(
        self, journal: str, entries: Mapping[str, bytes], move_to: str | None = None
    ) -> int:
        return await self._arun(self._journal_ack(journal, entries, move_to), "journal ack")

    def _journal_ack(
        self, journal: str, entries: Mapping[str, bytes], move_to: str | None
    ) -> _Commands[int]:
        if not entries:
            return 0
        args: list[Any] = []
        for field_, entry in entries.items():
            args += [field_, entry]
        keys = (journal,) if move_to is None else (journal, move_to)
        done = yield ("script", "ack", keys, {"args": args})
        return int(done)

    def journal_restore(self, journal: str, dead: str, fields: Sequence[str]) -> int:
        """Move entries from ``dead`` back into ``journal`` unless a newer one is pending there."""
        return self._run(self._journal_restore(journal, dead, fields), "journal restore")

    async def ajournal_restore(self, journal: str, dead: str, fields: Sequence[str]) -> int:
        return await self._arun(self._journal_restore(journal, dead, fields), "journal restore")

    def _journal_restore(self, journal: str, dead: str, fields: Sequence[str]) -> _Commands[int]:
        moved = yield ("script", "restore", (journal, dead), {"args": list(fields)})
        return int(moved)

    # -- read leases: fenced fills (a capability the read path looks for) -----

    def lease_many(self, keys: Sequence[str], token: str, ttl: float) -> list[bool]:
        """Take a fill lease on each key nobody holds one on; True where taken."""
        return self._run(self._lease_many(keys, token, ttl), "lease")

    async def alease_many(self, keys: Sequence[str], token: str, ttl: float) -> list[bool]:
        return await self._arun(self._lease_many(keys, token, ttl), "lease")

    def _lease_many(self, keys: Sequence[str], token: str, ttl: float) -> _Commands[list[bool]]:
        px = max(1, int(ttl * 1000))
        leases = [_lease_key(self._rkey(k)) for k in keys]
        if len(leases) == 1:
            got = yield ("call", "set", (leases[0], token), {"nx": True, "px": px})
            return [bool(got)]
        got_many = yield ("pipe", "", tuple(("set", (lk, token), {"nx": True, "px": px})
                                            for lk in leases), {})
        return [bool(g) for g in got_many]

    def fill_leased(self, entries: Sequence[TierEntry], token: str) -> int:
        """Set each entry only while our lease on it is intact; returns how many were set."""
        return self._run(self._fill_leased(entries, token), "fenced fill")

    async def afill_leased(self, entries: Sequence[TierEntry], token: str) -> int:
        return await self._arun(self._fill_leased(entries, token), "fenced fill")

    def _fill_leased(self, entries: Sequence[TierEntry], token: str) -> _Commands[int]:
        keys: list[str] = []
        args: list[Any] = [token]
        for rkey, blob, px in self._sealed(entries):
            keys += [_lease_key(rkey), rkey]
            args += [blob, px]
        filled = yield ("script", "fill", tuple(keys), {"args": args})
        return int(filled)

    def release(self, keys: Sequence[str], token: str) -> None:
        """Give back leases still ours (keys the store did not have)."""
        self._run(self._release(keys, token), "release")

    async def arelease(self, keys: Sequence[str], token: str) -> None:
        await self._arun(self._release(keys, token), "release")

    def _release(self, keys: Sequence[str], token: str) -> _Commands[None]:
        yield ("script", "release", tuple(_lease_key(self._rkey(k)) for k in keys),
               {"args": [token]})

    @staticmethod
    def _rkey(key: str) -> str:
        return key if len(key) <= MAX_KEY_LENGTH else hash_long_key(key)

    # -- versions and locks ----------------------------------------------------

    def keyed_versions(self) -> Any:
        """This tier as a Versioned namespace uses it: copies carry per-key versions."""
        from .versions import KeyVersions

        return KeyVersions(self)

    def bump_version(self, key: str) -> int:
        """Advance the version at ``key``; never below the server clock in microseconds."""
        return self._run(self._version("bump", key), "version bump")

    async def abump_version(self, key: str) -> int:
        return await self._arun(self._version("bump", key), "version bump")

    def read_version(self, key: str) -> int:
        """The version at ``key``, created (from the server clock) when absent."""
        return self._run(self._version("version", key), "version read")

    async def aread_version(self, key: str) -> int:
        return await self._arun(self._version("version", key), "version read")

    def _version(self, script: str, key: str) -> _Commands[int]:
        version = yield ("script", script, (key,), {"args": []})
        return int(version)

    def try_lock(self, key: str, token: str, lease: float) -> bool:
        """Take a lease on ``key`` for ``lease`` seconds unless someone holds it."""
        return self._run(self._try_lock(key, token, lease), "lock")

    async def atry_lock(self, key: str, token: str, lease: float) -> bool:
        return await self._arun(self._try_lock(key, token, lease), "lock")

    def _try_lock(self, key: str, token: str, lease: float) -> _Commands[bool]:
        got = yield ("call", "set", (key, token), {"nx": True, "px": max(1, int(lease * 1000))})
        return bool(got)

    def unlock(self, key: str, token: str) -> None:
        """Release a lease, only if it is still ours."""
        self._run(self._unlock(key, token), "unlock")

    async def aunlock(self, key: str, token: str) -> None:
        await self._arun(self._unlock(key, token), "unlock")

    def _unlock(self, key: str, token: str) -> _Commands[None]:
        yield ("script", "unlock", (key,), {"args": [token]})

    def listener(self, read_timeout: float, client_name: str | None = None) -> Any:
        """A new client of its own, for blocking reads up to ``read_timeout`` seconds.

        ``client_name`` is set on its connection (``CLIENT SETNAME``), so an
        operator can tell it apart in ``CLIENT LIST``.
        """
        if self.is_embedded:
            return _embedded_client()
        kwargs = dict(self.client.connection_pool.connection_kwargs)
        kwargs["socket_timeout"] = read_timeout
        if client_name is not None:
            kwargs["client_name"] = client_name
        source = self.client.connection_pool
        # connection_class (SSLConnection for rediss://) is not among the kwargs.
        pool = source.__class__(connection_class=source.connection_class, **kwargs)
        return redis.Redis(connection_pool=pool)

    def ping(self) -> bool:
        """True when the server answers within the timeout."""
        try:
            with self._errors("PING"):
                return bool(self.client.ping())
        except TierError:
            return False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._direct is not None:
                self._direct.close()
            self.client.close()
        except redis.RedisError:  # closing a broken connection: nothing to save
            pass

    async def aclose(self) -> None:
        """Close the async client (and the sync one); idempotent."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - called from a coroutine
            loop = None
        aclient = self._aclients.pop(loop, None) if loop is not None else None
        if aclient is not None:
            self._ascripts.pop(id(aclient), None)
            try:
                await aclient.aclose()
            except redis.RedisError:
                pass
        self.close()


def _open(raw: bytes, now_ms: float) -> Hit | Undecodable | None:
    """Unwrap an envelope: the payload and its remaining TTL, or UNDECODABLE."""
    if len(raw) < _HEADER or raw[0:1] != _ENVELOPE_V1:
        return UNDECODABLE
    expires_ms = _ENVELOPE.unpack_from(raw)[1]
    if expires_ms == 0:
        return (raw[_HEADER:], None)
    remaining = (expires_ms - now_ms) / 1000.0
    if remaining <= 0:
        return None  # expired in our clock; Redis will drop it within its resolution
    return (raw[_HEADER:], remaining)


def _lease_key(rkey: str) -> str:
    """``prefix:#lease:rest``: under the cache's prefix, outside every namespace's keys."""
    head, _, rest = rkey.partition(":")
    return f"{head}:#lease:{rest}"


def _version_key(rkey: str) -> str:
    """``prefix:#kv:rest``: a key's version under Versioned, beside its lease key."""
    head, _, rest = rkey.partition(":")
    return f"{head}:#kv:{rest}"


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def _redact(url: Any) -> Any:
    """A URL with its password replaced, for reprs and error messages."""
    if not isinstance(url, str):
        return url
    url = re.sub(r"(?i)(password=)[^&#]*", r"\1***", url)
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    # The userinfo ends at the first "@" of the authority, before any path or query.
    authority, slash, tail = rest.partition("/")
    if "@" not in authority:
        return url
    creds, _, host = authority.rpartition("@")
    user = creds.split(":", 1)[0]
    shown = f"{user}:***" if ":" in creds else user
    return f"{scheme}://{shown}@{host}{slash}{tail}"
