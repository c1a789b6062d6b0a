"""WriteAround: the store is written; cached copies are dropped, not filled."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .._engine.ops import Plan
from .._types import Key
from ..scheduler import Scheduler
from .base import Target, WriteContext, WriteOutcome, delete_through, nothing

__all__ = ["WriteAround"]

_DROPPED = WriteOutcome(fill_local=False)


@dataclass(frozen=True)
class WriteAround:
    """For write-heavy, read-rare data: writes skip the cache.

    ``set`` writes the store, then removes the key from every tier (and,
    under Purge or Versioned, from other processes' L1), so the next read
    loads the new value and fills the tiers.
    """

    def start(self, target: Target, scheduler: Scheduler) -> WriteAround:
        """Stateless: the policy is its own run."""
        return self

    def write(self, ctx: WriteContext, target: Target) -> Plan[WriteOutcome]:
        if target.store is not None:
            yield from target.save(ctx.items())
        yield from target.drop(ctx.tier_keys)
        return _DROPPED

    def delete(self, keys: Sequence[Key], tier_keys: Sequence[str], target: Target) -> Plan[None]:
        return delete_through(keys, tier_keys, target)

    def pending(self, fields: Sequence[str], target: Target) -> Plan[dict[int, Any]]:
        return nothing()

    def flush(self, target: Target, force: bool = False) -> Plan[tuple[bool, int]]:
        return nothing()

    def close(self) -> None:
        return None
