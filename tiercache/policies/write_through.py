"""WriteThrough: the store first, then the writer's own cached copies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .._engine.ops import Plan
from .._types import Key
from ..scheduler import Scheduler
from .base import Target, WriteContext, WriteOutcome, delete_through, nothing

__all__ = ["WriteThrough"]

_FILL_LOCAL = WriteOutcome(fill_local=True)


@dataclass(frozen=True)
class WriteThrough:
    """Safe and simple: a write returns once the store and every tier have it.

    The store is written first, so a failed store write leaves every cached
    copy as it was and the caller sees the ``StoreError``. Then the writer's
    in-process copy (L1) is replaced and the shared copy (Redis) deleted:
    delete-on-write, so two processes writing one key at once can never
    leave Redis holding the older value; the next read fills it, through a
    lease. In a namespace without a store (a pure cache) Redis is the only
    shared copy, so it is set instead. A delete removes the key from the
    store, then from every tier.
    """

    def start(self, target: Target, scheduler: Scheduler) -> WriteThrough:
        """Stateless: the policy is its own run."""
        return self

    def write(self, ctx: WriteContext, target: Target) -> Plan[WriteOutcome]:
        if target.store is None:
            # A pure cache: Redis is where the value lives for other processes.
            yield from target.fill(ctx)
            return _FILL_LOCAL
        yield from target.save(ctx.items())
        yield from target.drop(ctx.tier_keys, local=False)
        return _FILL_LOCAL

    def delete(self, keys: Sequence[Key], tier_keys: Sequence[str], target: Target) -> Plan[None]:
        return delete_through(keys, tier_keys, target)

    def pending(self, fields: Sequence[str], target: Target) -> Plan[dict[int, Any]]:
        return nothing()

    def flush(self, target: Target, force: bool = False) -> Plan[tuple[bool, int]]:
        return nothing()

    def close(self) -> None:
        return None
