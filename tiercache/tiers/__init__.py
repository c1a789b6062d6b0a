"""Cache tiers: the in-process L1 and Redis."""

from .base import UNDECODABLE, Hit, Tier, TierEntry
from .memory import MemoryTier
from .redis import RedisTier

__all__ = ["UNDECODABLE", "Hit", "MemoryTier", "RedisTier", "Tier", "TierEntry"]
