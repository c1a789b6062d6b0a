"""Every tier that ships runs the tier contract, in each configuration users run it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tiercache.testing.tier_contract import TierContract
from tiercache.tiers import MemoryTier, RedisTier, Tier


class TestMemoryTier(TierContract):
    """The L1 with its defaults: bounded by entries only, no TTL ceiling."""

    def make_tier(self) -> Tier:
        return MemoryTier()


class TestMemoryTierBounded(TierContract):
    """The L1 with a TTL ceiling and a byte bound."""

    def make_tier(self) -> Tier:
        return MemoryTier(ttl=10, maxbytes=10_000_000)


def _unlink_head(client: Any, ns: str) -> None:
    """Remove every key under the test's unique head (``tcXXXX:``), by SCAN."""
    head = ns.split(":", 1)[0]
    keys = list(client.scan_iter(match=f"{head}:*", count=1000))
    if keys:
        client.unlink(*keys)


class TestRedisTierEmbedded(TierContract):
    """The embedded L2 (fakeredis): expires by its own clock, not the one it is given."""

    expires_by_clock = False

    def make_tier(self) -> Tier:
        return RedisTier.embedded()

    @pytest.fixture
    def tier(self, ns: str) -> Iterator[Tier]:
        made = self.make_tier()
        # A second tier on the same embedded server cleans up, since the
        # test may have closed its own.
        cleaner = RedisTier.embedded()
        yield made
        made.close()
        _unlink_head(cleaner.client, ns)
        cleaner.close()


class TestRedisTierReal(TierContract):
    """The L2 on the real Redis at 127.0.0.1:6379 (fails without it under
    TIERCACHE_REQUIRE_REDIS=1)."""

    expires_by_clock = False
    url: str = ""

    def make_tier(self) -> Tier:
        return RedisTier(self.url)

    @pytest.fixture
    def tier(self, redis_url: str, redis_client: Any, ns: str) -> Iterator[Tier]:
        self.url = redis_url
        made = self.make_tier()
        yield made
        made.close()
        _unlink_head(redis_client, ns)


class TestRedisTierKeyVersions(TestRedisTierReal):
    """The L2 as Versioned namespaces use it: every copy carries its key's version."""

    def make_tier(self) -> Tier:
        return RedisTier(self.url).keyed_versions()
