"""dogpile.cache backend "tiercache": a region's values in a tiercache namespace (L1 + Redis)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import tiercache as tc

try:
    from dogpile.cache.api import (
        NO_VALUE,
        BytesBackend,
        CacheMutex,
        CantDeserializeException,
        KeyType,
        SerializedReturnType,
    )
except ImportError as exc:  # pragma: no cover - exercised only without dogpile installed
    raise ImportError(
        "tiercache.contrib.dogpile needs dogpile.cache: pip install 'dogpile.cache>=1.3'"
    ) from exc

__all__ = ["DEFAULT_LOCK_TIMEOUT", "DEFAULT_NAMESPACE", "RedisMutex", "TiercacheBackend"]

log = logging.getLogger("tiercache.contrib.dogpile")

DEFAULT_NAMESPACE = "dogpile"
"""Namespace of the region's values when the ``namespace`` argument is not given."""

DEFAULT_LOCK_TIMEOUT = 30.0
"""Seconds a cross-process creation lock lives when ``lock_timeout`` is not given.

Without an expiry a process that dies while creating a value would leave its
lock behind, and every other process would wait on it forever.
"""

_L1_MAXSIZE = 10_000
_LOCK_SOCKET_TIMEOUT = 5.0


class RedisMutex(CacheMutex):
    """dogpile's creation mutex as a Redis lock: one creator per key across processes.

    Not reentrant: a second ``acquire(False)`` on a held mutex returns
    False, as dogpile's suite requires. The lock expires after
    ``timeout`` seconds so a crashed holder cannot block the others forever;
    a creator slower than that loses its exclusivity, and its late
    ``release`` is logged, not raised.
    """

    def __init__(self, client: Any, name: str, *, timeout: float | None, sleep: float) -> None:
        # thread_local=False: dogpile may release from another thread than the
        # one that acquired (async creation runners); the token lives on the object.
        self._lock = client.lock(name, timeout=timeout, sleep=sleep, thread_local=False)

    def acquire(self, wait: bool = True) -> bool:
        """Take the lock; with ``wait=False`` return False at once if another holds it."""
        return bool(self._lock.acquire(blocking=wait))

    def release(self) -> None:
        """Give the lock back; a lock that already expired is logged and left alone."""
        from redis.exceptions import LockError

        try:
            self._lock.release()
        except LockError as exc:
            log.warning("dogpile lock %r expired before release: %s", self._lock.name, exc)

    def locked(self) -> bool:
        """True while any process holds the lock."""
        return bool(self._lock.locked())


class TiercacheBackend(BytesBackend):
    """dogpile.cache backend storing a region's serialized values in a tiercache namespace.

    Registered as ``"tiercache"``; configured from the region's arguments:

    - ``url``: a Redis URL (``redis://...``) or ``"embedded"`` (the
      in-process server, for tests); the backend builds and owns a
      ``tc.Cache`` of an L1 ``MemoryTier`` and a ``RedisTier``.
    - ``cache``: a ``tc.Cache`` of your own instead of ``url`` (not closed
      by the backend). Its first ``RedisTier`` carries the locks.
    - ``prefix``: key prefix in Redis (with ``url``); ``namespace``: the
      namespace name (``"dogpile"``); ``l1_maxsize``: L1 entries (10,000;
      0 for no L1); ``ttl``: ceiling on every cached copy's life, so Redis
      reclaims values dogpile no longer reads; ``timeout``: seconds per
      Redis call (with ``url``).
    - ``serializer``: a tiercache ``Serializer`` for the region's payloads
      when the region names no ``serializer=``/``deserializer=`` of its own;
      ``tc.MsgpackSerializer()`` by default (pickle never is: a shared
      Redis must not run code it is handed).
    - ``distributed_lock`` (default True with a Redis): ``get_mutex``
      returns a Redis lock, so one process creates a value while the others
      wait; False lets dogpile use its in-process mutex. The lock lives on
      ``lock_url`` (default: ``url``; with ``cache``, its first
      ``RedisTier``). ``lock_timeout`` (30 s) and ``lock_sleep`` (0.05 s
      between tries) tune it.

    Values travel as dogpile builds them (its metadata, ``|``, the
    payload), as bytes in the namespace, so every tiercache process shares
    them and ``delete`` reaches every process's L1.

    Raises:
        ConfigurationError: neither or both of ``url`` and ``cache``, or a malformed option.
    """

    def __init__(self, arguments: Mapping[str, Any]) -> None:
        # The arguments are read, never popped: dogpile's suite checks that
        # the caller's dict is left as it was.
        url = arguments.get("url")
        cache = arguments.get("cache")
        if (url is None) == (cache is None):
            raise tc.ConfigurationError("give the tiercache backend a 'url' or a 'cache', not both")
        self._owned = cache is None
        if cache is None:
            cache = _cache_from_url(arguments, str(url))
        elif not isinstance(cache, tc.Cache) or isinstance(cache, tc.AsyncCache):
            raise tc.ConfigurationError(f"'cache' must be a tiercache.Cache, not {cache!r}")
        self.cache: tc.Cache = cache
        options: dict[str, Any] = {}
        if arguments.get("ttl") is not None:
            options["ttl"] = arguments["ttl"]
        name = arguments.get("namespace", DEFAULT_NAMESPACE)
        self.namespace: tc.Namespace = cache.namespace(name, **options)

        serializer = arguments.get("serializer", tc.MsgpackSerializer())
        if not isinstance(serializer, tc.Serializer):
            raise tc.ConfigurationError(
                f"'serializer' must be a tiercache Serializer: {serializer!r}"
            )
        self._serializer = serializer
        # Instance attributes shadow BytesBackend's pickle defaults; a region
        # with its own serializer/deserializer ignores these.
        self.serializer = serializer.dumps
        self.deserializer = self._loads

        self._lock_client, self._owns_lock_client = _lock_client(arguments, cache, url)
        self._lock_prefix = f"{cache.prefix}:#dogpile-lock:{name}:"
        timeout = arguments.get("lock_timeout", DEFAULT_LOCK_TIMEOUT)
        self._lock_timeout = None if timeout is None else float(timeout)
        self._lock_sleep = float(arguments.get("lock_sleep", 0.05))

    def _loads(self, data: bytes) -> Any:
        try:
            return self._serializer.loads(data)
        except tc.SerializationError as exc:
            # dogpile treats this as "no value": another program's bytes or an
            # old format are a miss, never a crash.
            raise CantDeserializeException() from exc

    def has_lock_timeout(self) -> bool:
        """True when the cross-process lock expires (dogpile then allows overlapping creators)."""
        return self._lock_client is not None and self._lock_timeout is not None

    def get_mutex(self, key: KeyType) -> CacheMutex | None:
        """A Redis lock for ``key``, or None for dogpile's in-process mutex."""
        if self._lock_client is None:
            return None
        return RedisMutex(
            self._lock_client,
            self._lock_prefix + str(key),
            timeout=self._lock_timeout,
            sleep=self._lock_sleep,
        )

    def get_serialized(self, key: KeyType) -> SerializedReturnType:
        """The stored bytes of ``key``, or ``NO_VALUE`` when no layer has them."""
        value = self.namespace.get(key, tc.MISSING)
        # Only bytes are dogpile's: anything else in the namespace is not a value of the region.
        return value if isinstance(value, bytes) else NO_VALUE

    def get_serialized_multi(self, keys: Iterable[KeyType]) -> Sequence[SerializedReturnType]:
        """The stored bytes of each key, ``NO_VALUE`` for those absent; one round trip per tier."""
        keys = list(keys)
        if not keys:
            return []
        found = self.namespace.get_many(keys)
        return [value if isinstance(value := found.get(key), bytes) else NO_VALUE for key in keys]

    def set_serialized(self, key: KeyType, value: bytes) -> None:
        """Store ``value`` in every tier (other processes drop their L1 copy)."""
        self.namespace.set(key, value)

    def set_serialized_multi(self, mapping: Mapping[KeyType, bytes]) -> None:
        """Store several values in one write per tier."""
        items: dict[tc.Key, bytes] = dict(mapping.items())
        if items:
            self.namespace.set_many(items)

    def delete(self, key: KeyType) -> None:
        """Remove ``key`` from every tier of every process."""
        self.namespace.delete(key)

    def delete_multi(self, keys: Iterable[KeyType]) -> None:
        """Remove each key from every tier of every process."""
        for key in keys:
            self.namespace.delete(key)

    def close(self) -> None:
        """Close the cache the backend built from ``url`` (a ``cache`` passed in is left open)."""
        if self._owns_lock_client:
            self._lock_client.close()
        if self._owned:
            self.cache.close()


def _cache_from_url(arguments: Mapping[str, Any], url: str) -> tc.Cache:
    """A Cache of an optional L1 and one RedisTier, from the region's arguments."""
    if url == "embedded":
        redis_tier = tc.RedisTier.embedded()
    else:
        redis_tier = tc.RedisTier(url, **_only(arguments, ("timeout",)))
    maxsize = int(arguments.get("l1_maxsize", _L1_MAXSIZE))
    tiers: list[tc.Tier] = [tc.MemoryTier(maxsize=maxsize)] if maxsize > 0 else []
    tiers.append(redis_tier)
    return tc.Cache(tiers=tiers, **_only(arguments, ("prefix",)))


def _lock_client(arguments: Mapping[str, Any], cache: tc.Cache, url: Any) -> tuple[Any, bool]:
    """The Redis client of the creation locks (None: dogpile's own mutex), and if we made it."""
    wanted = arguments.get("distributed_lock")
    if wanted is False:
        return None, False
    lock_url = arguments.get("lock_url", None if url in (None, "embedded") else url)
    if lock_url is not None:
        import redis

        # A client of its own, with a roomier timeout than the tier's: a lock
        # is waited on for seconds anyway, and a slow Redis moment must not
        # fail a value's creation.
        client = redis.Redis.from_url(
            str(lock_url),
            socket_timeout=_LOCK_SOCKET_TIMEOUT,
            socket_connect_timeout=_LOCK_SOCKET_TIMEOUT,
        )
        return client, True
    # The embedded server, or a cache passed in without lock_url: its first Redis tier's client.
    redis_tier = next((t for t in cache.tiers if isinstance(t, tc.RedisTier)), None)
    if redis_tier is None:
        if wanted:
            raise tc.ConfigurationError(
                "distributed_lock needs a Redis: give 'lock_url' or a RedisTier"
            )
        return None, False
    return redis_tier.client, False


def _only(arguments: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    return {name: arguments[name] for name in names if arguments.get(name) is not None}
