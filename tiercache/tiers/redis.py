"""RedisTier: the shared L2, on redis-py (or an embedded fakeredis server)."""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .._types import seconds
from ..errors import ConfigurationError, TierError, TierUnavailable
from ..keys import MAX_KEY_LENGTH, hash_long_key
from .base import UNDECODABLE, Hit, TierEntry, Undecodable

__all__ = ["DEFAULT_TIMEOUT", "RedisTier"]

log = logging.getLogger("tiercache.redis")

DEFAULT_TIMEOUT = 0.1
"""Seconds any one Redis call may take before the tier counts it as failed."""

SCAN_BATCH = 1000
"""Keys asked for per SCAN step, and unlinked per UNLINK, by ``delete_prefix``."""

# Each value in Redis is an envelope: a version byte, the absolute expiry in
# Unix milliseconds (0: none), then the serializer's bytes. The expiry rides
# along so that one GET tells a reader how long the copy has left (backfill
# must never outlive the layer it came from) without a second command.
_ENVELOPE = struct.Struct(">cQ")
_ENVELOPE_V1 = b"T"
_HEADER = _ENVELOPE.size

# Write-back journal: one script records a pending write (with a sequence
# number that orders writers) and sets the cached copy, atomically, so the
# journal and the cache can never disagree on which write came last.
_JOURNAL_PUT = """
local n = (#ARGV) / 4
for i = 1, n do
  local seq = redis.call('INCR', KEYS[2])
  redis.call('HSET', KEYS[1], ARGV[4*i-3], seq .. '|' .. ARGV[4*i-2])
  local blob = ARGV[4*i-1]
  if blob ~= '' then
    local px = tonumber(ARGV[4*i])
    if px > 0 then
      redis.call('SET', KEYS[2+i], blob, 'PX', px)
    else
      redis.call('SET', KEYS[2+i], blob)
    end
  end
end
return n
"""
# Remove journal entries only if unchanged since they were read: a write
# that arrived during the flush stays pending.
_JOURNAL_ACK = """
local done = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i+1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
    if KEYS[2] then redis.call('HSET', KEYS[2], ARGV[i], ARGV[i+1]) end
    done = done + 1
  end
end
return done
"""
_JOURNAL_RESTORE = """
local moved = 0
for i = 1, #ARGV do
  local entry = redis.call('HGET', KEYS[2], ARGV[i])
  if entry then
    if redis.call('HSETNX', KEYS[1], ARGV[i], entry) == 1 then moved = moved + 1 end
    redis.call('HDEL', KEYS[2], ARGV[i])
  end
end
return moved
"""
# A namespace version that never goes backwards: at least the server's clock
# in microseconds, so a version key lost to eviction, FLUSHALL or a restart
# comes back larger than any version handed out before.
_BUMP_VERSION = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local v = tonumber(redis.call('GET', KEYS[1]) or '0')
if now > v then v = now else v = v + 1 end
redis.call('SET', KEYS[1], v)
return v
"""
_READ_VERSION = """
local v = redis.call('GET', KEYS[1])
if v then return tonumber(v) end
local t = redis.call('TIME')
v = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('SET', KEYS[1], v)
return v
"""
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

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
        ttl: ceiling on every entry's time to live (``None``: none).
        timeout: seconds any one call may take, connecting included; redis-py's
            own retries are off, so a call fails within it.
        name: label in stats.

    Failures of the client arrive as :class:`TierUnavailable` (timeouts,
    refused or dropped connections) or :class:`TierError` (anything else).
    """

    serialized = True

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        ttl: float | timedelta | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        name: str = "redis",
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
        self._url = _redact(url) if url else None
        self._closed = False
        self._scripts: dict[str, Any] = {}

    @classmethod
    def embedded(cls, *, ttl: float | timedelta | None = None, name: str = "redis") -> RedisTier:
        """The embedded default: a tier on the process's in-process fakeredis server."""
        return cls(ttl=ttl, name=name)

    def __repr__(self) -> str:
        where = "embedded" if self.is_embedded else (self._url or repr(self.client))
        return f"RedisTier({where}, ttl={self.ttl}, timeout={self.timeout})"

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Translate redis-py's exceptions at the boundary that imports it."""
        try:
            yield
        except (redis.TimeoutError, redis.ConnectionError) as exc:
            raise TierUnavailable(f"Redis {what} failed: {exc}") from exc
        except redis.RedisError as exc:
            raise TierError(f"Redis {what} failed: {exc}") from exc

    def get_many(self, keys: Sequence[str], now: float) -> list[Hit | Undecodable | None]:
        rkeys = [k if len(k) <= MAX_KEY_LENGTH else hash_long_key(k) for k in keys]
        with self._errors("GET"):
            raws = [self.client.get(rkeys[0])] if len(rkeys) == 1 else self.client.mget(rkeys)
        now_ms = self._wall_clock() * 1000.0
        return [None if raw is None else _open(raw, now_ms) for raw in raws]

    def set_many(self, entries: Sequence[TierEntry], now: float) -> None:
        ceiling = self.ttl
        now_ms = int(self._wall_clock() * 1000)
        commands = []
        for key, data, ttl, _size in entries:
            if ceiling is not None and (ttl is None or ttl > ceiling):
                ttl = ceiling
            px = None if ttl is None else max(1, int(ttl * 1000))
            header = _ENVELOPE.pack(_ENVELOPE_V1, 0 if px is None else now_ms + px)
            rkey = key if len(key) <= MAX_KEY_LENGTH else hash_long_key(key)
            commands.append((rkey, header + data, px))
        with self._errors("SET"):
            if len(commands) == 1:
                rkey, blob, px = commands[0]
                self.client.set(rkey, blob, px=px)
            elif commands:
                pipe = self.client.pipeline(transaction=False)
                for rkey, blob, px in commands:
                    pipe.set(rkey, blob, px=px)
                pipe.execute()

    def delete_many(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        rkeys = [k if len(k) <= MAX_KEY_LENGTH else hash_long_key(k) for k in keys]
        with self._errors("UNLINK"):
            self.client.unlink(*rkeys)

    def delete_prefix(self, prefix: str) -> None:
        """SCAN in batches and UNLINK what matches: never KEYS, never a long block."""
        with self._errors("SCAN"):
            batch: list[bytes] = []
            for key in self.client.scan_iter(match=_glob_escape(prefix) + "*", count=SCAN_BATCH):
                batch.append(key)
                if len(batch) >= SCAN_BATCH:
                    self.client.unlink(*batch)
                    batch.clear()
            if batch:
                self.client.unlink(*batch)

    # -- write-back journal (a capability WriteBack looks for) ----------------

    def journal_put(
        self,
        journal: str,
        seq_key: str,
        records: Sequence[tuple[str, bytes]],
        entries: Sequence[TierEntry],
    ) -> None:
        """Record pending writes and set their cached copies in one atomic step.

        ``records`` are ``(field, payload)`` pairs for the journal hash;
        ``entries`` the matching cache entries (same order).
        """
        now_ms = int(self._wall_clock() * 1000)
        keys = [journal, seq_key]
        args: list[Any] = []
        ceiling = self.ttl
        for (field_, payload), (key, data, ttl, _size) in zip(records, entries):
            if ceiling is not None and (ttl is None or ttl > ceiling):
                ttl = ceiling
            px = 0 if ttl is None else max(1, int(ttl * 1000))
            header = _ENVELOPE.pack(_ENVELOPE_V1, now_ms + px if px else 0)
            keys.append(key if len(key) <= MAX_KEY_LENGTH else hash_long_key(key))
            args += [field_, payload, header + data, px]
        with self._errors("journal write"):
            self._script("put", _JOURNAL_PUT)(keys=keys, args=args)

    def journal_get(self, journal: str, fields: Sequence[str]) -> list[bytes | None]:
        """The journal's pending entries for ``fields`` (None where none is pending)."""
        with self._errors("journal read"):
            return list(self.client.hmget(journal, list(fields)))

    def journal_read(self, journal: str, count: int) -> dict[str, bytes]:
        """Up to about ``count`` pending entries, ``{field: entry}`` (HSCAN, non-blocking)."""
        out: dict[str, bytes] = {}
        with self._errors("journal scan"):
            cursor = 0
            while True:
                cursor, chunk = self.client.hscan(journal, cursor, count=count)
                for field_, entry in chunk.items():
                    out[field_.decode() if isinstance(field_, bytes) else field_] = entry
                if cursor == 0 or len(out) >= count:
                    return out

    def journal_ack(
        self, journal: str, entries: Mapping[str, bytes], move_to: str | None = None
    ) -> int:
        """Remove entries still equal to what was read; optionally keep them in ``move_to``."""
        if not entries:
            return 0
        args: list[Any] = []
        for field_, entry in entries.items():
            args += [field_, entry]
        keys = [journal] if move_to is None else [journal, move_to]
        with self._errors("journal ack"):
            return int(self._script("ack", _JOURNAL_ACK)(keys=keys, args=args))

    def journal_restore(self, journal: str, dead: str, fields: Sequence[str]) -> int:
        """Move entries from ``dead`` back into ``journal`` unless a newer one is pending there."""
        with self._errors("journal restore"):
            return int(self._script("restore", _JOURNAL_RESTORE)(keys=[journal, dead], args=list(fields)))

    def bump_version(self, key: str) -> int:
        """Advance the version at ``key``; never below the server clock in microseconds."""
        with self._errors("version bump"):
            return int(self._script("bump", _BUMP_VERSION)(keys=[key]))

    def read_version(self, key: str) -> int:
        """The version at ``key``, created (from the server clock) when absent."""
        with self._errors("version read"):
            return int(self._script("version", _READ_VERSION)(keys=[key]))

    def try_lock(self, key: str, token: str, lease: float) -> bool:
        """Take a lease on ``key`` for ``lease`` seconds unless someone holds it."""
        with self._errors("lock"):
            return bool(self.client.set(key, token, nx=True, px=max(1, int(lease * 1000))))

    def unlock(self, key: str, token: str) -> None:
        """Release a lease, only if it is still ours."""
        with self._errors("unlock"):
            self._script("unlock", _UNLOCK)(keys=[key], args=[token])

    def _script(self, name: str, source: str) -> Any:
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self.client.register_script(source)
        return script

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
        pool = self.client.connection_pool.__class__(**kwargs)
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
            self.client.close()
        except redis.RedisError:  # closing a broken connection: nothing to save
            pass


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


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def _redact(url: Any) -> Any:
    """A URL with its password replaced, for reprs and error messages."""
    if not isinstance(url, str) or "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else f"{scheme}://{user}@{host}"
