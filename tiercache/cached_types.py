"""What type checkers see of a function memoized by ``@cache.cached``."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Generic, ParamSpec, Protocol, TypeVar, overload

from ._types import Key

__all__ = ["AsyncCached", "BoundCached", "Cached", "CachedDecorator"]

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class BoundCached(Protocol, Generic[R_co]):
    """``obj.method`` of a cached method, for type checkers: calls, invalidates, refreshes."""

    def __call__(self, *args: Any, **kwargs: Any) -> R_co: ...

    def invalidate(self, *args: Any, **kwargs: Any) -> Any: ...

    def refresh(self, *args: Any, **kwargs: Any) -> Any: ...

    def cache_key(self, *args: Any, **kwargs: Any) -> Key: ...


class Cached(Protocol[P, R_co]):
    """A function memoized by ``@cache.cached``, as type checkers see it.

    It keeps the function's signature (``ParamSpec``); ``invalidate`` and
    ``refresh`` take the same arguments.
    """

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Drop the cached result of this call, in every tier and process."""
        ...

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R_co:
        """Call the function now and cache its result, whatever was cached."""
        ...

    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> Key:
        """The key this call is cached under."""
        ...

    def __get__(self, obj: Any, owner: type | None = None) -> BoundCached[R_co]: ...


class AsyncCached(Protocol[P, R_co]):
    """A coroutine function memoized by ``@cache.cached``: ``await``-able, as are
    ``invalidate`` and ``refresh``."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R_co]: ...

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, None]:
        """Drop the cached result of this call, in every tier and process."""
        ...

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R_co]:
        """Call the function now and cache its result, whatever was cached."""
        ...

    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> Key:
        """The key this call is cached under."""
        ...

    def __get__(self, obj: Any, owner: type | None = None) -> BoundCached[Any]: ...


class CachedDecorator(Protocol):
    """What ``cache.cached(...)`` returns: sync functions stay sync, coroutine functions async."""

    # A coroutine function also matches the second overload: the first must win.
    @overload
    def __call__(  # type: ignore[overload-overlap]
        self, fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> AsyncCached[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> Cached[P, R]: ...
