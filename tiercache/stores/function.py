"""FunctionStore: the system of record as the caller's own functions."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from .._types import MISSING, Key
from ..errors import ConfigurationError, StoreError, TiercacheError
from .base import BaseStore

__all__ = ["FunctionStore"]

T = TypeVar("T")

LoadFn = Callable[[Key], Any]
LoadManyFn = Callable[[Sequence[Key]], Mapping[Key, Any]]
SaveFn = Callable[[Key, Any], Any]
SaveManyFn = Callable[[Mapping[Key, Any]], Any]
DeleteFn = Callable[[Key], Any]
DeleteManyFn = Callable[[Sequence[Key]], Any]


class FunctionStore(BaseStore):
    """A store whose operations are functions the caller supplies.

    Use it to serve an existing schema, a remote service, or anything else
    that is not a table tiercache owns. ``load`` or ``load_many`` is required;
    when only one is given the other is derived from it (``load_many`` calls
    ``load`` per key; ``load`` is the batch of one). The same holds for
    ``save``/``save_many`` and ``delete``/``delete_many``, which are optional:
    a read-only store raises :class:`StoreError` when asked to write.
    ``bind()`` returns the store itself.

    Args:
        load: ``load(key)`` returns the value, or ``tiercache.MISSING`` when
            the store has none (``None`` is an ordinary value).
        load_many: ``load_many(keys)`` returns a mapping of the keys found;
            entries whose value is ``MISSING`` are treated as absent.
        save: ``save(key, value)`` inserts or replaces one value.
        delete: ``delete(key)`` deletes one key; an absent key must be ignored.
        save_many: ``save_many({key: value})`` saves a batch.
        delete_many: ``delete_many(keys)`` deletes a batch.

    Raises:
        ConfigurationError: neither ``load`` nor ``load_many`` is given, or an
            argument is not callable.

    Errors raised by the functions arrive as :class:`StoreError` with the
    original as ``__cause__``; tiercache's own errors pass through unchanged.
    """

    def __init__(
        self,
        *,
        load: LoadFn | None = None,
        load_many: LoadManyFn | None = None,
        save: SaveFn | None = None,
        delete: DeleteFn | None = None,
        save_many: SaveManyFn | None = None,
        delete_many: DeleteManyFn | None = None,
    ) -> None:
        given = {
            "load": load,
            "load_many": load_many,
            "save": save,
            "delete": delete,
            "save_many": save_many,
            "delete_many": delete_many,
        }
        for name, fn in given.items():
            if fn is not None and not callable(fn):
                raise ConfigurationError(f"FunctionStore {name}= must be callable, not {fn!r}")
        if load is None and load_many is None:
            raise ConfigurationError("FunctionStore needs load= or load_many=")
        self._load = load
        self._load_many = load_many
        self._save = save
        self._save_many = save_many
        self._delete = delete
        self._delete_many = delete_many

    def __repr__(self) -> str:
        names = ", ".join(
            f"{name}={getattr(fn, '__qualname__', type(fn).__name__)}"
            for name, fn in (
                ("load", self._load),
                ("load_many", self._load_many),
                ("save", self._save),
                ("save_many", self._save_many),
                ("delete", self._delete),
                ("delete_many", self._delete_many),
            )
            if fn is not None
        )
        return f"FunctionStore({names})"

    def load(self, key: Key) -> Any:
        """Return the value of ``key``, or ``MISSING`` when the store has none.

        Raises:
            StoreError: the function failed (the original is its ``__cause__``).
        """
        if self._load is not None:
            return _call("load", self._load, key)
        return self.load_many([key]).get(key, MISSING)

    def load_many(self, keys: Sequence[Key]) -> dict[Key, Any]:
        """Return ``{key: value}`` for the keys the store has; absent keys are left out.

        Raises:
            StoreError: the function failed, or ``load_many`` returned something
                other than a mapping.
        """
        if not keys:
            return {}
        if self._load_many is None:
            assert self._load is not None  # noqa: S101 - for mypy; __init__ requires a loader
            found: dict[Key, Any] = {}
            for key in keys:
                value = _call("load", self._load, key)
                if value is not MISSING:
                    found[key] = value
            return found
        result = _call("load_many", self._load_many, keys)
        if not isinstance(result, Mapping):
            raise StoreError(
                f"FunctionStore load_many= must return a mapping, not {type(result).__name__}"
            )
        return {key: value for key, value in result.items() if value is not MISSING}

    def save(self, key: Key, value: Any) -> None:
        """Insert or replace one value.

        Raises:
            StoreError: the store has no ``save=``/``save_many=``, or it failed.
        """
        if self._save is not None:
            _call("save", self._save, key, value)
        else:
            self.save_many({key: value})

    def save_many(self, items: Mapping[Key, Any]) -> None:
        """Insert or replace every item (one call to ``save_many=`` when given).

        Raises:
            StoreError: the store has no ``save=``/``save_many=``, or it failed.
        """
        if not items:
            return
        if self._save_many is not None:
            _call("save_many", self._save_many, items)
        elif self._save is not None:
            for key, value in items.items():
                _call("save", self._save, key, value)
        else:
            raise StoreError("FunctionStore has no save= (nor save_many=): it is read-only")

    def delete(self, key: Key) -> None:
        """Delete one key; an absent key is ignored.

        Raises:
            StoreError: the store has no ``delete=``/``delete_many=``, or it failed.
        """
        if self._delete is not None:
            _call("delete", self._delete, key)
        else:
            self.delete_many([key])

    def delete_many(self, keys: Sequence[Key]) -> None:
        """Delete the keys (one call to ``delete_many=`` when given).

        Raises:
            StoreError: the store has no ``delete=``/``delete_many=``, or it failed.
        """
        if not keys:
            return
        if self._delete_many is not None:
            _call("delete_many", self._delete_many, keys)
        elif self._delete is not None:
            for key in keys:
                _call("delete", self._delete, key)
        else:
            raise StoreError("FunctionStore has no delete= (nor delete_many=): it is read-only")


def _call(name: str, fn: Callable[..., T], *args: Any) -> T:
    """Call a user function, translating its errors into ``StoreError``."""
    try:
        return fn(*args)
    except TiercacheError:
        raise
    except Exception as exc:
        raise StoreError(f"FunctionStore {name}= raised {type(exc).__name__}: {exc}") from exc
