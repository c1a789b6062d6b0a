"""WriteThrough: the store first, then the writer's own cached copies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .._plan import Plan
from .._types import Key
from .base import Target, WriteBatch

__all__ = ["WriteThrough"]


@dataclass(frozen=True)
class WriteThrough:
    """Safe and simple: a write returns once the store and every tier have it.

    The store is written first, so a failed store write leaves every cached
    copy as it was and the caller sees the ``StoreError``. A delete removes
    the key from the store, then from every tier.
    """

    def write(self, batch: WriteBatch, target: Target) -> Plan[None]:
        if target.has_store:
            yield from target.save(batch)
        yield from target.fill(batch)

    def delete(self, keys: Sequence[Key], tier_keys: Sequence[str], target: Target) -> Plan[None]:
        if target.has_store:
            yield from target.erase(keys)
        yield from target.drop(keys, tier_keys)

    def flush(self, target: Target) -> Plan[None]:
        return
        yield  # a generator that writes nothing

    def close(self) -> None:
        return None
