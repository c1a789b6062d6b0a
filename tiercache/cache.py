"""Cache: wiring of tiers, store and namespaces, and their lifecycle."""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from ._engine.bus_wiring import BusWiring
from ._engine.engine import Engine
from ._engine.ops import run
from ._types import Clock, Key, monotonic, seconds
from .decorators import CachedDecorator, cached_decorator
from .errors import ConfigurationError
from .invalidation import Invalidation
from .keys import check_name
from .namespace import Namespace, NamespaceBase, NamespaceConfig
from .policies import WritePolicy
from .repository import RepositoryStore, wrap_repository
from .scheduler import Scheduler, ThreadScheduler
from .serialization import Serializer
from .stats_schema import CacheStats
from .stores.base import Store
from .tiers.base import Tier

if TYPE_CHECKING:
    from .aio import AsyncNamespace

log = logging.getLogger("tiercache")

__all__ = ["DEFAULT_PREFIX", "Cache", "CacheBase"]

R = TypeVar("R")
N = TypeVar("N", bound=NamespaceBase)

DEFAULT_PREFIX = "tiercache"
"""Key prefix in shared tiers when ``Cache(prefix=...)`` is not given."""


class CacheBase(Generic[N]):
    """Wiring and lifecycle that :class:`Cache` and ``AsyncCache`` share.

    A chain of tiers in front of a store, divided into namespaces of type
    ``N`` (:class:`Namespace` or ``AsyncNamespace``); the subclass adds the
    methods that run I/O, as plain methods or as coroutines.

    Args:
        tiers: the cache layers, fastest first: typically
            ``[MemoryTier(...), RedisTier(...)]``. Empty means no caching.
        store: the default system of record of every namespace (each
            namespace may name its own). ``None``: namespaces are pure caches.
        prefix: first part of every key in shared tiers, so applications that
            share one Redis never see each other's keys.
        clock: monotonic seconds; tests pass a ``FakeClock``.
        scheduler: where background work (write-back flushing) runs; a
            thread per job by default, ``ManualScheduler`` in tests.
        max_staleness: seconds an L1 copy may be trusted while the
            invalidation bus cannot prove delivery (Purge and Versioned).
        bus: announce Purge and Versioned changes to other processes over the
            first Redis tier (default), or not (``False``: one process only).
        wall_clock: Unix seconds, for stamps shared between processes (the
            soft expiry of ``cached(stale_while_revalidate=...)``);
            ``time.time`` unless a custom ``clock`` is given, which then
            drives both (a FakeClock in tests).
        on_tier_error: ``"degrade"`` (default): a failing tier is read and
            written around (L1 + store), counted and logged, and no error
            reaches the caller; ``"raise"``: the ``TierUnavailable`` (or
            ``TierError``) reaches the caller.

    Raises:
        ConfigurationError: a tier or store is not one, or the prefix is malformed.
    """

    namespace_class: type[N]

    def __init__(
        self,
        *,
        tiers: Sequence[Tier] = (),
        store: Store | None = None,
        prefix: str = DEFAULT_PREFIX,
        clock: Clock = monotonic,
        scheduler: Scheduler | None = None,
        max_staleness: float = 1.0,
        bus: bool = True,
        on_tier_error: str = "degrade",
        wall_clock: Callable[[], float] | None = None,
    ) -> None:
        tiers = list(tiers)
        for tier in tiers:
            if not isinstance(tier, Tier):
                raise ConfigurationError(f"not a tier: {tier!r}")
        if len({id(t) for t in tiers}) != len(tiers):
            raise ConfigurationError("the same tier object is listed twice")
        if store is not None and not isinstance(store, Store):
            raise ConfigurationError(f"not a store: {store!r}")
        self.prefix = check_name("prefix", prefix)
        self.tiers = tiers
        self.store = store
        self.clock = clock
        if wall_clock is None:
            wall_clock = time.time if clock is monotonic else clock
        self.wall_clock = wall_clock
        self.scheduler = scheduler if scheduler is not None else ThreadScheduler()
        if on_tier_error not in ("degrade", "raise"):
            raise ConfigurationError(
                f"on_tier_error must be 'degrade' or 'raise', not {on_tier_error!r}"
            )
        self.max_staleness = float(seconds(max_staleness, "max_staleness") or 1.0)
        self.on_tier_error = on_tier_error
        self._namespaces: dict[str, N] = {}
        self._wiring = BusWiring(
            use=bus, tiers=self.tiers, prefix=self.prefix, max_staleness=self.max_staleness,
            engines=lambda: [ns.engine for ns in self._namespaces.values()],
            engine=self._engine_of,
        )
        self._lock = threading.RLock()
        self._closed = False
        # Interpreter exit drains write-back buffers; a weak reference, so
        # registering never keeps a cache alive.
        ref = weakref.ref(self)
        self._atexit = lambda: _close_at_exit(ref)
        atexit.register(self._atexit)

    def _engine_of(self, name: str) -> Engine | None:
        ns = self._namespaces.get(name)
        return None if ns is None else ns.engine

    @property
    def _bus(self) -> Any:
        """The invalidation bus, once a namespace needed it (None before, or without Redis)."""
        return self._wiring.bus

    def __repr__(self) -> str:
        return f"Cache(prefix={self.prefix!r}, tiers={self.tiers!r}, store={self.store!r})"

    def namespace(
        self,
        name: str,
        *,
        write: WritePolicy | None = None,
        invalidation: Invalidation | None = None,
        ttl: float | timedelta | None = None,
        negative_ttl: float | timedelta | None = None,
        max_value_bytes: int | None = None,
        store: Store | None = None,
        serializer: Serializer | None = None,
        copy: bool = False,
        ttl_jitter: float | None = None,
    ) -> N:
        """Return the namespace ``name``, creating it with these options on first use.

        Asking again for an existing namespace with no options returns it;
        asking with options different from its own is an error (use
        ``Namespace.configure`` to change policies at run time).

        Args:
            write: ``WriteThrough()`` (default), later ``WriteBack()``/``WriteAround()``.
            invalidation: ``Purge()`` (default) or ``TTL(seconds)``.
            ttl: ceiling on every cached copy's time to live, in every tier.
            negative_ttl: cache "the store has no such key" for this long.
            max_value_bytes: refuse values larger than this once serialized.
            store: this namespace's store, instead of the cache's.
            serializer: msgpack by default.
            copy: return a deep copy on every read, so callers may mutate it.
            ttl_jitter: take up to this fraction off each copy's TTL, at random,
                so entries written together do not expire together.

        Raises:
            ConfigurationError: malformed name or options, or a conflicting redefinition.
        """
        check_name("namespace", name)
        if store is not None and not isinstance(store, Store):
            raise ConfigurationError(f"not a store: {store!r}")
        config = NamespaceConfig.build(
            write=write,
            invalidation=invalidation,
            ttl=ttl,
            negative_ttl=negative_ttl,
            max_value_bytes=max_value_bytes,
            serializer=serializer,
            copy=copy,
            ttl_jitter=ttl_jitter,
        )
        given = any(
            option is not None
            for option in (
                write, invalidation, ttl, negative_ttl, max_value_bytes, store, serializer,
                ttl_jitter,
            )
        ) or copy
        with self._lock:
            if self._closed:
                raise ConfigurationError("this cache is closed")
            existing = self._namespaces.get(name)
            if existing is not None:
                if given and (
                    existing.config != config
                    or (store is not None and store is not existing.store)
                ):
                    raise ConfigurationError(
                        f"namespace {name!r} exists with other options; use configure()"
                    )
                return existing
            if store is None and self.store is not None:
                store = self.store.bind(name)
            ns = self.namespace_class(
                name,
                prefix=self.prefix,
                tiers=self.tiers,
                store=store,
                config=config,
                clock=self.clock,
                scheduler=self.scheduler,
                bus=self._wiring.bus_for(config),
                max_staleness=self.max_staleness,
                on_tier_error=self.on_tier_error,
                wall_clock=self.wall_clock,
            )
            self._namespaces[name] = ns
            return ns

    def cached(
        self,
        namespace: str | None = None,
        *,
        ttl: float | timedelta | None = None,
        key: Callable[..., Key] | None = None,
        negative_ttl: float | timedelta | None = None,
        stale_while_revalidate: float | timedelta | None = None,
        stale_if_error: float | timedelta | None = None,
        ttl_jitter: float | None = None,
        write: WritePolicy | None = None,
        invalidation: Invalidation | None = None,
        max_value_bytes: int | None = None,
    ) -> CachedDecorator:
        """Memoize a function or method, sync or async, in a namespace of this cache.

        Args:
            namespace: defaults to ``fn.<module>.<qualname>`` (shortened to fit).
            ttl: how long a result is fresh.
            key: ``key(*args, **kwargs) -> key`` instead of the bound arguments.
            negative_ttl: a function returning ``tiercache.MISSING`` means "not
                found"; that answer is cached this long (and returned as MISSING).
            stale_while_revalidate: after ``ttl``, serve the old result for up
                to this long while one background call refreshes it.
            stale_if_error: after ``ttl``, if the function raises, serve the
                old result for up to this long instead of raising.
            ttl_jitter: fraction of each TTL taken off at random.
            write, invalidation, max_value_bytes: as for :meth:`namespace`.

        The wrapper gains ``invalidate(*args, **kwargs)`` (drop that call's
        result everywhere), ``refresh(*args, **kwargs)`` (call now and cache)
        and ``cache_key(*args, **kwargs)``. Concurrent misses of one call run
        the function once: across threads, coroutines and, with a Redis tier,
        processes.

        Raises:
            ConfigurationError: bad options (checked when decorating).
        """
        return cached_decorator(
            self.namespace, namespace=namespace, ttl=ttl, key=key, negative_ttl=negative_ttl,
            stale_while_revalidate=stale_while_revalidate, stale_if_error=stale_if_error,
            ttl_jitter=ttl_jitter, write=write, invalidation=invalidation,
            max_value_bytes=max_value_bytes,
        )

    def wrap(
        self,
        repository: R,
        *,
        namespace: str,
        get: str | None = None,
        get_many: str | None = None,
        save: str | None = None,
        delete: str | None = None,
        write: WritePolicy | None = None,
        invalidation: Invalidation | None = None,
        ttl: float | timedelta | None = None,
        negative_ttl: float | timedelta | None = None,
        max_value_bytes: int | None = None,
    ) -> R:
        """Cache an application's repository object behind a namespace.

        ``get``, ``get_many``, ``save`` and ``delete`` name the repository's
        methods: ``get(key)`` returns the value or ``None`` when absent,
        ``get_many(keys)`` a dict, ``save(key, value)``, ``delete(key)``.
        The returned object has the repository's methods (and type): the
        named reads go through the namespace's tiers, the named writes
        through its write policy (so ``WriteBack`` batches the saves), and
        every other attribute is the repository's own. Under ``AsyncCache``
        the named methods may be coroutines.

        Raises:
            ConfigurationError: a named method does not exist, or neither
                ``get`` nor ``get_many`` is named.
        """
        names = {"get": get, "get_many": get_many, "save": save, "delete": delete}
        store = RepositoryStore(repository, **names)
        ns = self.namespace(
            namespace, store=store, write=write, invalidation=invalidation, ttl=ttl,
            negative_ttl=negative_ttl, max_value_bytes=max_value_bytes,
        )
        facade = cast("Namespace | AsyncNamespace", ns)  # N is one of the two
        return wrap_repository(repository, facade, names)

    @property
    def namespaces(self) -> dict[str, N]:
        """The namespaces created so far, by name."""
        return dict(self._namespaces)

    def stats(self) -> CacheStats:
        """Counters per namespace and layer, and each tier's own size and evictions.

        The structure is :class:`tiercache.stats_schema.CacheStats` (see the README).
        """
        tiers: dict[str, Any] = {}
        for t, tier in enumerate(self.tiers):
            info: dict[str, Any] = {"kind": type(tier).__name__}
            for attr in ("evictions", "currbytes"):
                if hasattr(tier, attr):
                    info[attr] = getattr(tier, attr)
            if hasattr(tier, "__len__"):
                info["entries"] = len(tier)  # type: ignore[arg-type]
            tiers[f"L{t + 1}:{tier.name}"] = info
        # A copy: a scrape may call stats() while another thread adds a namespace.
        namespaces: dict[str, Any] = {
            name: ns.stats() for name, ns in list(self._namespaces.items())
        }
        return {"namespaces": namespaces, "tiers": tiers}

    def _close_now(self) -> None:
        """``close`` on the calling thread, for either kind of cache (and at interpreter exit)."""
        namespaces = self._begin_close()
        if namespaces is None:
            return
        errors: list[BaseException] = []
        for ns in namespaces:
            try:
                # The sync driver, whatever the namespace's kind: this also
                # closes an AsyncCache at interpreter exit, when no loop runs.
                run(ns.engine.close_plan())
            except Exception as exc:  # noqa: BLE001 - close the rest, then report the first failure
                errors.append(exc)
        self._finish_close(errors)

    def _begin_close(self) -> list[N] | None:
        """Mark the cache closed; the namespaces to close, or None if it already was."""
        with self._lock:
            if self._closed:
                return None
            self._closed = True
        atexit.unregister(self._atexit)
        return list(self._namespaces.values())

    def _finish_close(self, errors: list[BaseException]) -> None:
        """Stop the bus, close tiers and stores once each, raise the first error."""
        self._wiring.stop()
        closed: set[int] = set()
        stores = [self.store, *(ns.store for ns in self._namespaces.values())]
        for closable in [*self.tiers, *stores]:
            if closable is None or id(closable) in closed:
                continue
            closed.add(id(closable))
            try:
                closable.close()
            except Exception as exc:  # noqa: BLE001 - close the rest, raise the first after
                errors.append(exc)
        if errors:
            raise errors[0]


class Cache(CacheBase[Namespace]):
    """A chain of tiers in front of a store, divided into namespaces.

    Args and errors: see :class:`CacheBase`. ``flush()`` and ``close()``
    run on the calling thread; ``with Cache(...) as cache:`` closes it.
    """

    namespace_class = Namespace

    def flush(self) -> None:
        """Drain every namespace's write-back buffer."""
        for ns in list(self._namespaces.values()):
            ns.flush()

    def close(self) -> None:
        """Flush, stop background work and close every tier and store; idempotent."""
        self._close_now()

    def __enter__(self) -> Cache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _close_at_exit(ref: weakref.ref[CacheBase[Any]]) -> None:
    cache = ref()
    if cache is not None:
        try:
            # The sync close, for AsyncCache too: no event loop runs at exit,
            # and the plans run as well on the tiers' sync clients.
            cache._close_now()
        except Exception:  # at exit there is nobody left to raise to
            log.exception("tiercache: closing a cache at interpreter exit failed")
