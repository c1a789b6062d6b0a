"""The tiers declare the capabilities the engine wires them by (checked once, with isinstance)."""

from __future__ import annotations

from typing import Any

import pytest

import tiercache as tc
from tiercache._engine.views import TierView
from tiercache.tiers.base import (
    AsyncClosing,
    AsyncJournaling,
    AsyncLeasing,
    AsyncTier,
    AsyncVersioning,
    Journaling,
    Leasing,
    LocalLookup,
    NonBlocking,
    Shared,
    SingleKeyRead,
    Tier,
    Versioning,
)

REDIS_CAPABILITIES = [
    Tier, Shared, Leasing, Journaling, Versioning, SingleKeyRead,
    AsyncTier, AsyncLeasing, AsyncJournaling, AsyncVersioning, AsyncClosing,
]


@pytest.fixture
def redis_tier(redis_url: str) -> Any:
    """A RedisTier on the test server, closed after the test."""
    tier = tc.RedisTier(redis_url)
    yield tier
    tier.close()


@pytest.mark.parametrize("capability", REDIS_CAPABILITIES, ids=lambda c: c.__name__)
def test_redis_tier_declares_every_capability(redis_tier: Any, capability: type) -> None:
    """RedisTier is shared, leases, journals, versions, reads one key, and has coroutine twins."""
    assert isinstance(redis_tier, capability)


@pytest.mark.parametrize("capability", REDIS_CAPABILITIES, ids=lambda c: c.__name__)
def test_the_versioned_face_keeps_every_capability(redis_tier: Any, capability: type) -> None:
    """The per-key-version face a Versioned namespace uses is wired like the tier itself."""
    assert isinstance(redis_tier.keyed_versions(), capability)


def test_redis_tier_view_has_every_operation(redis_tier: Any) -> None:
    """Its view carries lease, journal and version operations and a single-key read; no L1
    lookup."""
    view = TierView(redis_tier)
    assert view.shared and view.serialized
    assert view.lease is not None and view.journal is not None and view.versions is not None
    assert view.get_one is not None and view.lookup is None


def test_memory_tier_is_a_local_lookup_and_not_shared() -> None:
    """MemoryTier: in-process (a raw lookup, a one-entry fill, never blocks), not shared, no
    journal."""
    tier = tc.MemoryTier()
    assert isinstance(tier, LocalLookup) and isinstance(tier, NonBlocking)
    for capability in (Shared, Leasing, Journaling, Versioning, SingleKeyRead, AsyncTier):
        assert not isinstance(tier, capability), capability.__name__
    view = TierView(tier)
    assert view.lookup is not None and not view.shared and not view.serialized
    assert view.lease is None and view.journal is None and view.versions is None
