"""Connections to one Redis server, the circuit breaker, and the one map of redis-py's errors."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.exceptions import (
    ClusterDownError,
    RedisClusterException,
    RedisClusterUnreachableError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.retry import Retry

from .._redact import redact, redact_repr
from ..errors import ConfigurationError, TierError, TierUnavailable
from .direct import DirectReads
from .scripts import LuaScript

__all__ = [
    "ASYNC_MAX_CONNECTIONS",
    "DEFAULT_TIMEOUT",
    "REDIS_ERRORS",
    "Breaker",
    "Connection",
    "tier_error",
]

log = logging.getLogger("tiercache.redis")

DEFAULT_TIMEOUT = 0.1
"""Seconds any one Redis call may take before the tier counts it as failed."""

ASYNC_MAX_CONNECTIONS = 16
"""Connections an AsyncCache's Redis tier opens at most; more callers wait for one."""

REDIS_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, RedisClusterException)
"""Everything redis-py raises on purpose: cluster errors do not all derive from RedisError."""

# Failures that say "not reachable now" rather than "refused this command":
# they count towards the breaker, and callers may degrade around them.
_UNAVAILABLE: tuple[type[Exception], ...] = (
    redis.TimeoutError,
    redis.ConnectionError,  # refused, reset, auth, loading, no pooled connection free
    ClusterDownError,  # MasterDownError too
    TryAgainError,  # a slot is moving between nodes
    RedisClusterUnreachableError,
    SlotNotCoveredError,
)


def tier_error(exc: Exception, what: str) -> TierError:
    """The one translation of a redis-py exception into tiercache's error tree.

    Callers raise the result ``from exc``: :class:`TierUnavailable` for a
    server that did not answer (timeouts, refused or dropped connections, a
    cluster without a node for the slot), :class:`TierError` for anything
    else (a refused command, out of memory).
    """
    kind = TierUnavailable if isinstance(exc, _UNAVAILABLE) else TierError
    return kind(f"Redis {what} failed: {exc}")


class Breaker:
    """A tier's circuit breaker, and the boundary where its client's errors are translated.

    After ``threshold`` unavailable answers in a row the breaker opens: calls
    fail fast, without touching the network, for ``cooldown`` seconds; then
    one caller's ``probe`` (a PING) decides, and success closes it again
    (counted in ``recoveries``).
    """

    def __init__(
        self, threshold: int, cooldown: float, probe: Callable[[], bool], owner: object
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.failures = 0
        self.open_until = 0.0
        self.opened = 0
        self.recoveries = 0
        self._probe = probe
        self._owner = owner  # shown in the log lines, by its (redacted) repr
        self._probing = False
        self._lock = threading.Lock()

    @contextmanager
    def guard(self, what: str) -> Iterator[None]:
        """Fail fast while open; translate redis-py's exceptions (see :func:`tier_error`)."""
        if self.open_until:
            self.gate(what)
        try:
            yield
        except REDIS_ERRORS as exc:
            raise self.failure(exc, what) from exc
        self.failures = 0

    def failure(self, exc: Exception, what: str) -> TierError:
        """The error to raise for ``exc``; an unavailable answer counts towards opening."""
        error = tier_error(exc, what)
        if isinstance(error, TierUnavailable):
            with self._lock:
                self.failures += 1
                if self.failures >= self.threshold and not self.open_until:
                    self.open_until = time.monotonic() + self.cooldown
                    self.opened += 1
                    log.warning("Redis tier %r unavailable: failing fast for %.2fs",
                                self._owner, self.cooldown)
        return error

    def gate(self, what: str) -> None:
        """While open: raise at once, or probe once the cooldown is over."""
        with self._lock:
            if time.monotonic() < self.open_until or self._probing:
                raise TierUnavailable(f"Redis {what} skipped: circuit open")
            self._probing = True
        try:
            healthy = self._probe()
        except REDIS_ERRORS:
            healthy = False
        with self._lock:
            self._probing = False
            if not healthy:
                self.open_until = time.monotonic() + self.cooldown
                raise TierUnavailable(f"Redis {what} skipped: circuit open, probe failed")
            self.open_until = 0.0
            self.failures = 0
            self.recoveries += 1
        log.warning("Redis tier %r answers again", self._owner)


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


class Connection:
    """The clients of one server: the sync one, one async one per event loop, listeners.

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://`` URL; with neither it
            nor ``client``, the process's embedded fakeredis server.
        client: an existing ``redis.Redis``, used as configured.
        aclient: an existing ``redis.asyncio.Redis`` to go with ``client``.
        timeout: seconds any one call may take, connecting included, for
            the clients made here; redis-py's own retries are off.

    Raises:
        ConfigurationError: both ``url`` and ``client``, or a URL that is not Redis's.
    """

    def __init__(self, url: str | None, client: Any, aclient: Any, timeout: float | None) -> None:
        if url is not None and client is not None:
            raise ConfigurationError("give RedisTier a url or a client, not both")
        self.timeout = timeout
        self.is_embedded = url is None and client is None
        self.url = (redact(url) if isinstance(url, str) else redact_repr(url)) if url else None
        """The URL with its password hidden: safe for reprs and logs."""
        self._url_raw = url
        if client is not None:
            self.client: Any = client
        elif url is not None:
            if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
                raise ConfigurationError(f"not a Redis URL: {redact_repr(url)}")
            try:
                self.client = redis.Redis.from_url(
                    url,
                    socket_timeout=timeout,
                    socket_connect_timeout=timeout,
                    retry=Retry(NoBackoff(), 0),
                    health_check_interval=0,
                )
            except ValueError as exc:
                # redis-py's message may quote the URL back, password included.
                raise ConfigurationError(
                    f"bad Redis URL {redact_repr(url)}: {redact(str(exc))}"
                ) from exc
        else:
            self.client = _embedded_client()
        self._user_aclient: Any = aclient
        self._aclients: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._scripts: dict[LuaScript, Any] = {}
        self._ascripts: dict[int, dict[LuaScript, Any]] = {}

    def describe(self) -> str:
        """Where this connects, for reprs: ``embedded``, the redacted URL, or the client."""
        return "embedded" if self.is_embedded else (self.url or repr(self.client))

    def direct_reads(self) -> DirectReads | None:
        """Reads on connections of the tier's own (see direct.py), where that is safe.

        Only on a client made here from a URL: a client passed in may carry
        a cache, a pool of another kind, hooks its owner relies on.
        """
        pool = self.client.connection_pool
        if self._url_raw is None or type(pool) is not redis.ConnectionPool:
            return None
        return DirectReads(pool) if getattr(pool, "cache", None) is None else None

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

    def script(self, lua: LuaScript) -> Any:
        """``lua`` registered on the sync client (EVALSHA, loaded again after a restart)."""
        script = self._scripts.get(lua)
        if script is None:
            script = self._scripts[lua] = self.client.register_script(lua.source)
        return script

    def ascript(self, lua: LuaScript) -> Any:
        """``lua`` registered on the running event loop's async client."""
        client = self.aclient
        scripts = self._ascripts.setdefault(id(client), {})
        script = scripts.get(lua)
        if script is None:
            script = scripts[lua] = client.register_script(lua.source)
        return script

    def listener(self, read_timeout: float, client_name: str | None = None) -> Any:
        """A new client of its own, for blocking reads up to ``read_timeout`` seconds.

        ``client_name`` is set on its connection (``CLIENT SETNAME``), so an
        operator can tell it apart in ``CLIENT LIST``.
        """
        if self.is_embedded:
            return _embedded_client()
        source = self.client.connection_pool
        kwargs = dict(source.connection_kwargs)
        kwargs["socket_timeout"] = read_timeout
        if client_name is not None:
            kwargs["client_name"] = client_name
        # connection_class (SSLConnection for rediss://) is not among the kwargs.
        pool = source.__class__(connection_class=source.connection_class, **kwargs)
        return redis.Redis(connection_pool=pool)

    def close(self) -> None:
        """Close the sync client; a broken connection has nothing to save."""
        try:
            self.client.close()
        except REDIS_ERRORS:
            pass

    async def aclose(self) -> None:
        """Close the running event loop's async client, if one was made."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - called from a coroutine
            return
        aclient = self._aclients.pop(loop, None)
        if aclient is not None:
            self._ascripts.pop(id(aclient), None)
            try:
                await aclient.aclose()
            except REDIS_ERRORS:
                pass
