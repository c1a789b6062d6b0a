"""MappingStore: a dict (any MutableMapping) as the system of record."""

from __future__ import annotations

import threading
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

from .._types import Key
from .base import BaseStore

__all__ = ["MappingStore"]


class MappingStore(BaseStore):
    """A store over a mapping of the caller's keys to Python objects.

    The mapping is used as given (not copied), so the caller sees every
    write and can seed it beforehand. Values are kept as the objects
    themselves, not serialized: a caller that mutates a saved object mutates
    the stored one. Every operation holds one lock, so a batch is atomic with
    respect to the other operations of this store (not to code that touches
    the mapping directly). ``bind()`` returns the store itself: every
    namespace that shares a MappingStore shares its keys.

    Args:
        mapping: The mapping to serve; a new ``dict`` when omitted.
    """

    def __init__(self, mapping: MutableMapping[Key, Any] | None = None) -> None:
        self.mapping: MutableMapping[Key, Any] = {} if mapping is None else mapping
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MappingStore(<{type(self.mapping).__name__} of {len(self.mapping)}>)"

    def load_many(self, keys: Sequence[Key]) -> dict[Key, Any]:
        """Return ``{key: value}`` for the keys the mapping has; absent keys are left out."""
        found: dict[Key, Any] = {}
        mapping = self.mapping
        with self._lock:
            for key in keys:
                # Indexing, not ``in`` then index: one lookup, and it works for
                # mappings whose ``__contains__`` is costly (shelve, ...).
                try:
                    found[key] = mapping[key]
                except KeyError:
                    pass
        return found

    def save_many(self, items: Mapping[Key, Any]) -> None:
        """Insert or replace every item, atomically with respect to this store."""
        with self._lock:
            self.mapping.update(items)

    def delete_many(self, keys: Sequence[Key]) -> None:
        """Delete the keys; absent keys are ignored."""
        mapping = self.mapping
        with self._lock:
            for key in keys:
                mapping.pop(key, None)
