"""The tier contract, run against MemoryTier with W-TinyLFU admission."""

from __future__ import annotations

from tiercache.testing.tier_contract import TierContract
from tiercache.tiers import MemoryTier, Tier


class TestMemoryTierTinyLFUContract(TierContract):
    """The L1 keeping its entries by W-TinyLFU instead of LRU."""

    def make_tier(self) -> Tier:
        return MemoryTier(admission="tinylfu")


class TestMemoryTierTinyLFUBoundedContract(TierContract):
    """W-TinyLFU with a TTL ceiling and a byte bound."""

    def make_tier(self) -> Tier:
        return MemoryTier(ttl=10, maxbytes=10_000_000, admission="tinylfu")
