"""wrap(): put a namespace in front of an application's repository object."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from ._engine.ops import MaybeAsync, Op, Plan, arun, run
from ._types import MISSING, Key
from .errors import ConfigurationError, StoreError, TiercacheError
from .stores.base import BaseStore

if TYPE_CHECKING:
    from .aio import AsyncNamespace
    from .namespace import Namespace

__all__ = ["RepositoryStore", "wrap_repository"]

R = TypeVar("R")
T = TypeVar("T")

_SYNC_ONLY = "this repository is async: use it with AsyncCache"


class RepositoryStore(BaseStore):
    """A repository's methods as a Store, sync or async.

    ``get(key)`` returns the value or ``None`` when absent (a repository has
    no way to store ``None`` as a value here: ``None`` means absent);
    ``get_many(keys)`` a dict of the keys found; ``save(key, value)``;
    ``delete(key)``. Coroutine methods are awaited under AsyncCache.
    Errors from the methods arrive as :class:`StoreError` (``__cause__`` set).
    """

    def __init__(self, obj: Any, *, get: str | None, get_many: str | None,
                 save: str | None, delete: str | None) -> None:
        self._obj = obj
        self._names = {"get": get, "get_many": get_many, "save": save, "delete": delete}
        for role, name in self._names.items():
            if name is not None and not callable(getattr(obj, name, None)):
                raise ConfigurationError(f"{type(obj).__name__} has no method {name!r} ({role}=)")
        if get is None and get_many is None:
            raise ConfigurationError("wrap() needs get= or get_many=")

    def _method(self, role: str) -> Callable[..., Any] | None:
        name = self._names[role]
        return None if name is None else getattr(self._obj, name)

    # Each operation is a plan of the repository's calls, so the sync and
    # async forms share one body, run by the engine's two drivers.

    def _load_many(self, keys: Sequence[Key]) -> Plan[dict[Key, Any]]:
        many = self._method("get_many")
        if many is not None:
            found = yield _call(many, list(keys))
            return {k: v for k, v in dict(found).items() if v is not None and v is not MISSING}
        one = self._method("get")
        assert one is not None  # noqa: S101 - narrows the type: __init__ refuses a wrap with neither
        out: dict[Key, Any] = {}
        for key in keys:
            value = yield _call(one, key)
            if value is not None and value is not MISSING:
                out[key] = value
        return out

    def _save_many(self, items: Mapping[Key, Any]) -> Plan[None]:
        save = self._method("save")
        if save is None:
            raise StoreError(f"{type(self._obj).__name__} was wrapped without save=")
        for key, value in items.items():
            yield _call(save, key, value)

    def _delete_many(self, keys: Sequence[Key]) -> Plan[None]:
        delete = self._method("delete")
        if delete is None:
            raise StoreError(f"{type(self._obj).__name__} was wrapped without delete=")
        for key in keys:
            yield _call(delete, key)

    def load_many(self, keys: Sequence[Key]) -> dict[Key, Any]:
        with _translated():
            return run(self._load_many(keys))

    async def aload_many(self, keys: Sequence[Key]) -> dict[Key, Any]:
        with _translated():
            return await arun(self._load_many(keys))

    def save_many(self, items: Mapping[Key, Any]) -> None:
        with _translated():
            run(self._save_many(items))

    async def asave_many(self, items: Mapping[Key, Any]) -> None:
        with _translated():
            await arun(self._save_many(items))

    def delete_many(self, keys: Sequence[Key]) -> None:
        with _translated():
            run(self._delete_many(keys))

    async def adelete_many(self, keys: Sequence[Key]) -> None:
        with _translated():
            await arun(self._delete_many(keys))


def _call(method: Callable[..., Any], *args: Any) -> Op[Any]:
    """A repository method call: awaited under AsyncCache, refused in Cache if it is async."""
    return MaybeAsync(method, args, _SYNC_ONLY)


@contextmanager
def _translated() -> Iterator[None]:
    """The repository's own exceptions as StoreError; tiercache's pass as they are."""
    try:
        yield
    except TiercacheError:
        raise
    except Exception as exc:
        raise StoreError(f"repository call failed: {exc}") from exc


class _CachedRepository:
    """The wrapped object: cached reads, writes through the namespace, the rest as is."""

    def __init__(
        self, obj: Any, ns: Namespace | AsyncNamespace, names: dict[str, str | None]
    ) -> None:
        self.__wrapped__ = obj
        self.namespace = ns
        if names["get"] is not None:
            setattr(self, names["get"], ns.get)
        if names["get_many"] is not None:
            setattr(self, names["get_many"], ns.get_many)
        if names["save"] is not None:
            setattr(self, names["save"], ns.set)
        if names["delete"] is not None:
            setattr(self, names["delete"], ns.delete)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__wrapped__, name)

    def __repr__(self) -> str:
        return f"<cached {self.__wrapped__!r} in namespace {self.namespace.name!r}>"


def wrap_repository(obj: R, ns: Namespace | AsyncNamespace, names: dict[str, str | None]) -> R:
    """The proxy; typed as the repository so type checkers see its methods."""
    return _CachedRepository(obj, ns, names)  # type: ignore[return-value]
