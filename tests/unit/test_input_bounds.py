"""Inputs that can never work are refused up front, with an error from our tree."""

from __future__ import annotations

from datetime import timedelta

import pytest

import tiercache as tc
from tiercache._types import MAX_TTL

TOO_LONG = [1e16, 1e17, MAX_TTL * 2, timedelta(days=365 * 101)]


@pytest.mark.parametrize("ttl", TOO_LONG)
def test_a_ttl_past_max_ttl_is_refused_everywhere_it_is_given(ttl: float | timedelta) -> None:
    """ttl=1e17 (struct.error on every miss) and 1e16 (never cached in Redis) are refused when
    given."""
    with pytest.raises(tc.ConfigurationError, match="100 years"):
        tc.MemoryTier(ttl=ttl)
    with pytest.raises(tc.ConfigurationError, match="100 years"):
        tc.RedisTier.embedded(ttl=ttl)
    with pytest.raises(tc.ConfigurationError, match="100 years"):
        tc.TTL(ttl)
    with tc.Cache(tiers=[tc.MemoryTier()]) as cache:
        with pytest.raises(tc.ConfigurationError, match="100 years"):
            cache.namespace("n", ttl=ttl)
        with pytest.raises(tc.ConfigurationError, match="100 years"):
            cache.namespace("m", negative_ttl=ttl)
        with pytest.raises(tc.ConfigurationError, match="100 years"):
            cache.cached(ttl=ttl)


@pytest.mark.redis
def test_the_longest_accepted_ttl_is_cached_in_real_redis(redis_url: str, prefix: str) -> None:
    """A namespace at MAX_TTL stores and serves its copy from a real Redis, with that expiry."""
    import redis

    with tc.Cache(tiers=[tc.RedisTier(redis_url)], prefix=prefix) as cache:
        ns = cache.namespace("long", ttl=MAX_TTL)
        ns.set("k", {"v": 1})
        assert ns.get("k", default=tc.MISSING) == {"v": 1}
    client = redis.Redis.from_url(redis_url)
    try:
        keys = [k for k in client.scan_iter(match=f"{prefix}:long:*") if b"#" not in k]
        assert keys, "nothing was written to Redis"
        assert all(MAX_TTL - 60 < client.ttl(k) <= MAX_TTL for k in keys)
    finally:
        client.close()


@pytest.mark.redis
def test_a_refused_ttl_writes_nothing(redis_url: str, prefix: str) -> None:
    """A namespace refused for its TTL leaves no key in Redis."""
    import redis

    with (
        tc.Cache(tiers=[tc.MemoryTier(), tc.RedisTier(redis_url)], prefix=prefix) as cache,
        pytest.raises(tc.ConfigurationError),
    ):
        cache.namespace("n", ttl=1e17)
    client = redis.Redis.from_url(redis_url)
    try:
        assert list(client.scan_iter(match=f"{prefix}:*")) == []
    finally:
        client.close()
