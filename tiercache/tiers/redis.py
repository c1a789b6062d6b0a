"""RedisTier: the shared L2, on redis-py (or an embedded fakeredis server)."""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
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
        self.embedded = url is None and client is None
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

    @classmethod
    def embedded(cls, *, ttl: float | timedelta | None = None, name: str = "redis") -> RedisTier:
        """The embedded default: a tier on the process's in-process fakeredis server."""
        return cls(ttl=ttl, name=name)

    def __repr__(self) -> str:
        where = "embedded" if self.embedded else (self._url or repr(self.client))
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
