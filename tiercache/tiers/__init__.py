"""Cache tiers: the Tier protocol and the in-process L1 (RedisTier lives in tiercache.redis)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import UNDECODABLE, Hit, Tier, TierEntry
from .memory import MemoryTier

if TYPE_CHECKING:
    from ..redis.tier import RedisTier

__all__ = ["UNDECODABLE", "Hit", "MemoryTier", "RedisTier", "Tier", "TierEntry"]


def __getattr__(name: str) -> Any:
    # ``tiercache.tiers.RedisTier`` keeps working, imported on first use:
    # tiercache.redis imports tiers.base, so importing it here would be a cycle.
    if name == "RedisTier":
        from ..redis.tier import RedisTier

        return RedisTier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
