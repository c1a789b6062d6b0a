"""cached(): memoize sync and async functions and methods in a namespace."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import threading
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

from ._engine.common import NOTHING
from ._engine.ops import AsyncCall, Blocking, Op, Plan, arun, run
from ._types import MISSING, Key, seconds
from .cached_types import AsyncCached, Cached, CachedDecorator
from .call_keys import call_key, first_parameter, function_namespace, single_parameter
from .errors import ConfigurationError
from .invalidation import Invalidation
from .policies import WritePolicy

if TYPE_CHECKING:
    from .namespace import NamespaceBase

__all__ = [
    "AsyncCached",
    "Cached",
    "CachedDecorator",
    "cached_decorator",
    "cached_function",
    "call_key",
]


log = logging.getLogger("tiercache")



class _Call:
    """One call of the decorated function, as a plan step and as a loader.

    ``op()`` is the call as an operation (``acall`` awaits a coroutine
    function); ``load`` lets the namespace's read path load through it,
    single-flight included.
    """

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                 key: Key, wrap: Callable[[Any], Any], is_async: bool) -> None:
        self.fn, self.args, self.kwargs, self.key, self.wrap = fn, args, kwargs, key, wrap
        self.is_async = is_async

    def op(self) -> Op[Any]:
        """The call, run by either driver."""
        if self.is_async:
            return AsyncCall(self.call, self.acall)
        return Blocking(self.call)

    def load(self, keys: list[Key]) -> Op[Mapping[Key, Any]]:
        """The call as the read path's loader of ``keys`` (the one key of this call)."""
        op: Op[Mapping[Key, Any]] = AsyncCall(self.load_many, self.aload_many, (keys,))
        return op

    def call(self) -> Any:
        return self.fn(*self.args, **self.kwargs)

    async def acall(self) -> Any:
        return await self.fn(*self.args, **self.kwargs)

    def load_many(self, keys: list[Key]) -> dict[Key, Any]:
        return self._found(self.call())

    async def aload_many(self, keys: list[Key]) -> dict[Key, Any]:
        result = self.fn(*self.args, **self.kwargs)
        if inspect.isawaitable(result):
            result = await result
        return self._found(result)

    def _found(self, result: Any) -> dict[Key, Any]:
        # A function returns MISSING to say "not found" (cached for negative_ttl).
        return {} if result is MISSING else {self.key: self.wrap(result)}


def cached_function(
    fn: Callable[..., Any],
    ns: NamespaceBase,
    *,
    key: Callable[..., Key] | None,
    ttl: float | None,
    stale_while_revalidate: float | None,
    stale_if_error: float | None,
) -> Callable[..., Any]:
    """Wrap ``fn``; see :meth:`tiercache.Cache.cached` for the behaviour."""
    if key is None:
        make_key = call_key(fn)
    else:
        custom = key

        def make_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Key:
            return custom(*args, **kwargs)

    soft = bool(stale_while_revalidate or stale_if_error)
    is_async = inspect.iscoroutinefunction(fn)
    # Soft-expiry stamps are shared through Redis: read from the cache's
    # wall clock (a FakeClock in tests, when the cache was given one).
    wall = ns.wall_clock
    drive: Callable[[Any], Any] = arun if is_async else run
    refreshing: set[Key] = set()
    refreshing_lock = threading.Lock()
    tasks: set[asyncio.Task[None]] = set()
    # The namespace's named internal API: its engine's plans and its L1 peek.
    engine = ns.engine
    peek = engine.peek

    def wrap(value: Any) -> Any:
        # Under soft expiry the cache holds [fresh until (wall clock), value];
        # the namespace's TTL (ttl + grace) keeps it for serving stale.
        return [wall() + ttl, value] if soft else value  # type: ignore[operator]

    def refresh_plan(call: _Call) -> Plan[Any]:
        result = yield call.op()
        if result is not MISSING:
            yield from engine.set_plan({call.key: wrap(result)})
        else:
            yield from engine.invalidate_plan([call.key])
        return result

    def background_refresh(call: _Call) -> None:
        with refreshing_lock:
            if call.key in refreshing:
                return  # one refresh per key at a time
            refreshing.add(call.key)

        def done() -> None:
            with refreshing_lock:
                refreshing.discard(call.key)

        if is_async:
            async def task() -> None:
                try:
                    await arun(refresh_plan(call))
                except Exception:
                    log.warning("%s: background refresh failed", fn.__qualname__, exc_info=True)
                finally:
                    done()

            # Keep a reference: the loop holds tasks only weakly.
            running = asyncio.get_running_loop().create_task(task())
            tasks.add(running)
            running.add_done_callback(tasks.discard)
            return

        def thread() -> None:
            try:
                run(refresh_plan(call))
            except Exception:
                log.warning("%s: background refresh failed", fn.__qualname__, exc_info=True)
            finally:
                done()

        threading.Thread(target=thread, name="tiercache-refresh", daemon=True).start()

    def miss_plan(call: _Call, hit: Any) -> Plan[Any]:
        """After an L1 miss (hit is NOTHING) or with a soft-expired entry in hand."""
        if hit is NOTHING:
            hit = yield from engine.get_or_load(call.key, call.load)
        if not soft or hit is MISSING:
            return hit
        fresh_until, value = hit
        now = wall()
        if now < fresh_until:
            return value
        if stale_while_revalidate and now < fresh_until + stale_while_revalidate:
            background_refresh(call)
            return value
        try:
            return (yield from refresh_plan(call))
        except Exception:
            if stale_if_error and now < fresh_until + stale_if_error:
                log.warning("%s failed; serving its stale value", fn.__qualname__)
                return value
            raise

    if is_async:

        @functools.wraps(fn)
        async def awrapper(*args: Any, **kwargs: Any) -> Any:
            k = make_key(args, kwargs)
            hit = peek(k)
            if hit is not NOTHING and not soft:
                return hit
            return await arun(miss_plan(_Call(fn, args, kwargs, k, wrap, is_async), hit))

        wrapper: Callable[..., Any] = awrapper
    else:

        def slow(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            k = make_key(args, kwargs)
            hit = peek(k)
            if hit is not NOTHING and not soft:
                return hit
            return run(miss_plan(_Call(fn, args, kwargs, k, wrap, is_async), hit))

        state = engine.state
        lookup, clock = state.l1_lookup, state.clock
        l1_stats = state.l1_stats
        if key is None and not soft and lookup is not None and single_parameter(fn):
            arity = len(inspect.signature(fn).parameters)

            # The common memoized call, f(n) or obj.f(n) with an int or str:
            # the namespace's L1 hit path inlined (lookup, time compare, counter).
            @functools.wraps(fn)
            def swrapper(*args: Any, **kwargs: Any) -> Any:
                if not kwargs and len(args) == arity:
                    arg = args[-1]
                    kind = type(arg)
                    if kind is int or kind is str:
                        # The encoder's inline forms (keys.inline_prefixes); a
                        # non-ASCII str that misses is checked on the slow path.
                        prefix = state.int_prefix if kind is int else state.str_prefix
                        try:
                            value, expires_at, _ = lookup(prefix + str(arg))
                        except KeyError:
                            pass
                        else:
                            if expires_at > clock():
                                l1_stats.hits += 1
                                return value
                return slow(args, kwargs)

        else:

            @functools.wraps(fn)
            def swrapper(*args: Any, **kwargs: Any) -> Any:
                return slow(args, kwargs)

        wrapper = swrapper

    def invalidate(*args: Any, **kwargs: Any) -> Any:
        """Drop the cached result of this call, in every tier and process."""
        return drive(engine.invalidate_plan([make_key(args, kwargs)]))

    def refresh(*args: Any, **kwargs: Any) -> Any:
        """Call the function now and cache its result, whatever was cached."""
        k = make_key(args, kwargs)
        return drive(refresh_plan(_Call(fn, args, kwargs, k, wrap, is_async)))

    wrapper.invalidate = invalidate  # type: ignore[attr-defined]
    wrapper.refresh = refresh  # type: ignore[attr-defined]
    wrapper.namespace = ns  # type: ignore[attr-defined]
    wrapper.cache_key = lambda *a, **kw: make_key(a, kw)  # type: ignore[attr-defined]
    if key is None and first_parameter(fn) in ("self", "cls"):
        return _CachedMethod(wrapper)
    return wrapper


def cached_decorator(
    namespace_of: Callable[..., NamespaceBase],
    *,
    namespace: str | None,
    ttl: float | timedelta | None,
    key: Callable[..., Key] | None,
    negative_ttl: float | timedelta | None,
    stale_while_revalidate: float | timedelta | None,
    stale_if_error: float | timedelta | None,
    ttl_jitter: float | None,
    write: WritePolicy | None,
    invalidation: Invalidation | None,
    max_value_bytes: int | None,
) -> CachedDecorator:
    """``Cache.cached``'s decorator: options checked now, the namespace made per function.

    Raises:
        ConfigurationError: bad options (checked when decorating).
    """
    fresh = seconds(ttl)
    swr = seconds(stale_while_revalidate, "stale_while_revalidate")
    sie = seconds(stale_if_error, "stale_if_error")
    if (swr or sie) and fresh is None:
        raise ConfigurationError("stale_while_revalidate and stale_if_error need ttl=")
    hard = fresh + max(swr or 0.0, sie or 0.0) if fresh is not None else None

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        ns = namespace_of(
            namespace if namespace is not None else function_namespace(fn),
            ttl=hard,
            negative_ttl=negative_ttl,
            ttl_jitter=ttl_jitter,
            write=write,
            invalidation=invalidation,
            max_value_bytes=max_value_bytes,
        )
        return cached_function(
            fn, ns, key=key, ttl=fresh,
            stale_while_revalidate=swr, stale_if_error=sie,
        )

    return cast(CachedDecorator, decorate)  # the overloads say what decorate returns


class _CachedMethod:
    """A cached method: ``obj.method(x)``, and ``obj.method.invalidate(x)`` / ``.refresh(x)``."""

    def __init__(self, wrapper: Callable[..., Any]) -> None:
        self._wrapper = wrapper
        functools.update_wrapper(self, wrapper)
        self.__wrapped__ = wrapper.__wrapped__  # type: ignore[attr-defined]  # the user's function
        self.invalidate = wrapper.invalidate  # type: ignore[attr-defined]
        self.refresh = wrapper.refresh  # type: ignore[attr-defined]
        self.namespace = wrapper.namespace  # type: ignore[attr-defined]
        self.cache_key = wrapper.cache_key  # type: ignore[attr-defined]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrapper(*args, **kwargs)

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return _BoundCached(self._wrapper, obj)


class _BoundCached:
    """``obj.method`` of a cached method: calls, invalidates and refreshes for ``obj``."""

    __slots__ = ("_obj", "_wrapper")

    def __init__(self, wrapper: Callable[..., Any], obj: Any) -> None:
        self._wrapper = wrapper
        self._obj = obj

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrapper(self._obj, *args, **kwargs)

    def invalidate(self, *args: Any, **kwargs: Any) -> Any:
        """Drop the cached result of ``obj.method(*args, **kwargs)``."""
        return self._wrapper.invalidate(self._obj, *args, **kwargs)  # type: ignore[attr-defined]

    def refresh(self, *args: Any, **kwargs: Any) -> Any:
        """Call ``obj.method(*args, **kwargs)`` now and cache its result."""
        return self._wrapper.refresh(self._obj, *args, **kwargs)  # type: ignore[attr-defined]

    def cache_key(self, *args: Any, **kwargs: Any) -> Any:
        """The key of ``obj.method(*args, **kwargs)``."""
        return self._wrapper.cache_key(self._obj, *args, **kwargs)  # type: ignore[attr-defined]

    @property
    def namespace(self) -> Any:
        """The namespace the method's results are cached in."""
        return self._wrapper.namespace  # type: ignore[attr-defined]
