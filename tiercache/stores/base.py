"""The Store protocol: the system of record behind a namespace."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from .._types import MISSING, Key

__all__ = ["BaseStore", "Store"]


@runtime_checkable
class Store(Protocol):
    """The system of record. Batch methods are the primitive.

    Keys are the caller's keys (``str``, ``int``, ``bytes``, tuples); values
    are Python objects. A store that keeps bytes encodes keys with
    :func:`tiercache.keys.encode_key` and values with its serializer.
    Implementations translate their client's errors into ``StoreError``.
    """

    def load_many(self, keys: Sequence[Key]) -> dict[Key, Any]:
        """Return ``{key: value}`` for the keys the store has; absent keys are left out."""
        ...

    def save_many(self, items: Mapping[Key, Any]) -> None:
        """Insert or replace every item, atomically where the store can."""
        ...

    def delete_many(self, keys: Sequence[Key]) -> None:
        """Delete the keys; absent keys are ignored."""
        ...

    def bind(self, namespace: str) -> Store:
        """Return the store that ``namespace`` should use when this one is shared.

        A store given to ``Cache(store=...)`` serves every namespace; stores
        that own a table return a sibling on a table of the namespace's own,
        so two namespaces' key ``"42"`` never meet.
        """
        ...

    def close(self) -> None:
        """Release connections; idempotent."""
        ...


class BaseStore:
    """Single-key conveniences over the batch primitives, and no-op lifecycle."""

    def load_many(self, keys: Sequence[Key]) -> dict[Key, Any]:  # pragma: no cover
        raise NotImplementedError

    def save_many(self, items: Mapping[Key, Any]) -> None:  # pragma: no cover
        raise NotImplementedError

    def delete_many(self, keys: Sequence[Key]) -> None:  # pragma: no cover
        raise NotImplementedError

    def load(self, key: Key) -> Any:
        """Return the stored value, or ``MISSING`` when the store has none."""
        return self.load_many([key]).get(key, MISSING)

    def save(self, key: Key, value: Any) -> None:
        """Insert or replace one value."""
        self.save_many({key: value})

    def delete(self, key: Key) -> None:
        """Delete one key; an absent key is ignored."""
        self.delete_many([key])

    def bind(self, namespace: str) -> Store:
        return self

    def close(self) -> None:
        return None
