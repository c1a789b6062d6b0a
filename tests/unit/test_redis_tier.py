"""RedisTier on a real Redis (and embedded): envelope, expiry, foreign bytes, timeouts, secrets."""

from __future__ import annotations

import logging
import socket
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import tiercache as tc
from tiercache.errors import ConfigurationError, TierUnavailable
from tiercache.serialization import MsgpackSerializer
from tiercache.tiers.base import UNDECODABLE

CacheFactory = Callable[..., tc.Cache]


@pytest.fixture
def make_cache() -> Iterator[CacheFactory]:
    """Build caches that are closed when the test ends."""
    made: list[tc.Cache] = []

    def build(**kwargs: Any) -> tc.Cache:
        kwargs.setdefault("bus", False)
        cache = tc.Cache(**kwargs)
        made.append(cache)
        return cache

    yield build
    for cache in made:
        cache.close()


def envelope(payload: bytes, expires_ms: int = 0) -> bytes:
    return b"T" + struct.pack(">Q", expires_ms) + payload


def seed(ns: tc.Namespace, items: dict[Any, Any]) -> None:
    """Cache items in every tier the way a read that loaded them does."""
    ns.get_many(list(items), loader=lambda keys: {k: items[k] for k in keys})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port that accepts TCP connections and never answers (a hung server)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield int(sock.getsockname()[1])
    sock.close()


def connection_attempts(port: int) -> int:
    """Connections waiting in the accept queue of the black hole on ``port`` (Linux).

    The black hole never accepts, so every connection a client opened to it
    stays counted there, even after the client gave up and closed it.
    """
    waiting = 0
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":  # LISTEN
                waiting += int(fields[4].split(":")[1], 16)  # rx_queue: the accept backlog
    return waiting


# -- envelope and expiry ------------------------------------------------------------


def test_value_in_redis_is_envelope_with_expiry_and_payload(
    redis_url: str, redis_client: Any, prefix: str, make_cache: CacheFactory
) -> None:
    """Redis holds b"T" + 8-byte big-endian expiry (Unix ms) + the serializer's bytes."""
    ns = make_cache(tiers=[tc.RedisTier(redis_url)], prefix=prefix).namespace("ns", ttl=30)
    before = time.time() * 1000
    seed(ns, {"k": {"a": (1, 2)}})
    after = time.time() * 1000
    raw = redis_client.get(f"{prefix}:ns:s:k")
    assert raw[:1] == b"T"
    (expires_ms,) = struct.unpack(">Q", raw[1:9])
    assert before + 30_000 - 5 <= expires_ms <= after + 30_000 + 5
    assert raw[9:] == MsgpackSerializer().dumps({"a": (1, 2)})


def test_entry_without_ttl_has_zero_expiry_and_no_redis_ttl(
    redis_url: str, redis_client: Any, prefix: str, make_cache: CacheFactory
) -> None:
    """Without any TTL the envelope's expiry is 0 and Redis keeps the key without expiry."""
    ns = make_cache(tiers=[tc.RedisTier(redis_url)], prefix=prefix).namespace("ns")
    seed(ns, {"k": 1})
    raw = redis_client.get(f"{prefix}:ns:s:k")
    assert struct.unpack(">Q", raw[1:9]) == (0,)
    assert redis_client.pttl(f"{prefix}:ns:s:k") == -1


def test_ttl_is_set_with_px(
    redis_url: str, redis_client: Any, prefix: str, make_cache: CacheFactory
) -> None:
    """A TTL reaches Redis as a millisecond expiry (PTTL just under ttl*1000)."""
    ns = make_cache(tiers=[tc.RedisTier(redis_url)], prefix=prefix).namespace("ns", ttl=30)
    seed(ns, {"k": 1})
    assert 29_000 < redis_client.pttl(f"{prefix}:ns:s:k") <= 30_000
    tier = tc.RedisTier(redis_url)
    try:
        tier.set_many([(f"{prefix}:raw:ms", b"\x01\xc0", 0.25, 2)], 0.0)
        assert 0 < redis_client.pttl(f"{prefix}:raw:ms") <= 250
    finally:
        tier.close()


def test_tier_ttl_caps_entry_ttls(redis_url: str, redis_client: Any, prefix: str) -> None:
    """RedisTier(ttl=10) caps a 60 s entry and an entry without TTL at 10 s."""
    tier = tc.RedisTier(redis_url, ttl=10)
    try:
        tier.set_many(
            [(f"{prefix}:r:a", b"\x01\xc0", 60, 2), (f"{prefix}:r:b", b"\x01\xc0", None, 2)], 0.0
        )
        for key in ("a", "b"):
            assert 9_000 < redis_client.pttl(f"{prefix}:r:{key}") <= 10_000
    finally:
        tier.close()


def test_get_many_reports_payload_and_remaining_ttl(redis_url: str, prefix: str) -> None:
    """get_many returns (payload bytes, remaining seconds) per hit and None per miss, in order."""
    tier = tc.RedisTier(redis_url)
    try:
        tier.set_many(
            [(f"{prefix}:r:a", b"\x01abc", 20, 4), (f"{prefix}:r:b", b"\x01xyz", None, 4)], 0.0
        )
        a, missing, b = tier.get_many([f"{prefix}:r:a", f"{prefix}:r:zz", f"{prefix}:r:b"], 0.0)
        assert a is not None and a[0] == b"\x01abc" and 19 < a[1] <= 20  # type: ignore[index,operator]
        assert missing is None
        assert b == (b"\x01xyz", None)
        single = tier.get_many([f"{prefix}:r:a"], 0.0)[0]
        assert single is not None and single[0] == b"\x01abc"  # type: ignore[index]
    finally:
        tier.close()


def test_envelope_expired_by_wall_clock_is_a_miss(
    redis_url: str, redis_client: Any, prefix: str
) -> None:
    """A key still in Redis whose envelope says it expired is a plain miss (not undecodable)."""
    redis_client.set(f"{prefix}:r:old", envelope(b"\x01\xc0", int(time.time() * 1000) - 1000))
    tier = tc.RedisTier(redis_url)
    try:
        assert tier.get_many([f"{prefix}:r:old"], 0.0) == [None]
    finally:
        tier.close()


def test_client_given_is_used_as_is(redis_url: str, redis_client: Any, prefix: str) -> None:
    """RedisTier(client=...) reads and writes through that client."""
    tier = tc.RedisTier(client=redis_client)
    tier.set_many([(f"{prefix}:c:k", b"\x01\xc0", None, 2)], 0.0)
    assert redis_client.get(f"{prefix}:c:k") == envelope(b"\x01\xc0")
    assert tier.get_many([f"{prefix}:c:k"], 0.0) == [(b"\x01\xc0", None)]


def test_delete_prefix_scans_and_removes_only_matching_keys(
    redis_url: str, redis_client: Any, prefix: str
) -> None:
    """delete_prefix removes every key under the prefix (more than one SCAN batch) and no other."""
    pipe = redis_client.pipeline(transaction=False)
    for i in range(2500):
        pipe.set(f"{prefix}:a:{i}", b"x")
    pipe.set(f"{prefix}:ab:1", b"x")
    pipe.set(f"{prefix}:b:1", b"x")
    pipe.execute()
    tier = tc.RedisTier(redis_url)
    try:
        tier.delete_prefix(f"{prefix}:a:")
    finally:
        tier.close()
    left = sorted(k.decode() for k in redis_client.scan_iter(match=f"{prefix}:*", count=1000))
    assert left == [f"{prefix}:ab:1", f"{prefix}:b:1"]


# -- bytes tiercache did not write -------------------------------------------------

PLANTED = {
    "another program's string": b"hello from another program",
    "another program's T-string": b"The quick brown fox jumps",
    "truncated envelope": b"T\x00\x00\x01",
    "envelope, garbage payload": envelope(b"\xc1\xff\x00"),
    "envelope, other format": envelope(b"\x02{\"a\":1}"),
    "envelope, empty msgpack": envelope(b"\x01"),
}


@pytest.mark.parametrize("raw", list(PLANTED.values()), ids=list(PLANTED))
def test_undecodable_bytes_are_a_counted_miss(
    raw: bytes, redis_url: str, redis_client: Any, prefix: str, make_cache: CacheFactory
) -> None:
    """Bytes planted by another program make get return the default and count as undecodable."""
    redis_client.set(f"{prefix}:ns:s:k", raw)
    cache = make_cache(tiers=[tc.MemoryTier(), tc.RedisTier(redis_url)], prefix=prefix)
    ns = cache.namespace("ns")
    assert ns.get("k") is None
    assert ns.get("k", default=tc.MISSING) is tc.MISSING
    l2 = cache.stats()["namespaces"]["ns"]["tiers"]["L2:redis"]
    assert l2["undecodable"] == 2
    assert l2["misses"] == 2 and l2["hits"] == 0
    assert l2["errors"] == 0


@pytest.mark.parametrize("raw", list(PLANTED.values()), ids=list(PLANTED))
def test_undecodable_bytes_fall_through_to_the_store(
    raw: bytes, redis_url: str, redis_client: Any, prefix: str, make_cache: CacheFactory
) -> None:
    """After undecodable bytes in L2 the store is consulted and its value returned."""
    redis_client.set(f"{prefix}:ns:s:k", raw)
    cache = make_cache(
        tiers=[tc.MemoryTier(), tc.RedisTier(redis_url)],
        store=tc.MappingStore({"k": "from the store"}),
        prefix=prefix,
    )
    ns = cache.namespace("ns")
    assert ns.get("k") == "from the store"
    stats = cache.stats()["namespaces"]["ns"]
    assert stats["tiers"]["L2:redis"]["undecodable"] == 1
    assert stats["store"]["hits"] == 1
    assert ns.get("k") == "from the store"  # now from L1
    assert cache.stats()["namespaces"]["ns"]["store"]["hits"] == 1


def test_tier_reports_undecodable_for_foreign_envelopes(
    redis_url: str, redis_client: Any, prefix: str
) -> None:
    """RedisTier.get_many answers UNDECODABLE for bytes without a tiercache envelope."""
    redis_client.set(f"{prefix}:r:foreign", b"plain")
    redis_client.set(f"{prefix}:r:short", b"T\x00")
    tier = tc.RedisTier(redis_url)
    try:
        assert tier.get_many([f"{prefix}:r:foreign", f"{prefix}:r:short"], 0.0) == [UNDECODABLE] * 2
    finally:
        tier.close()


def test_undecodable_warning_is_logged_and_rate_limited(
    redis_url: str, redis_client: Any, prefix: str, make_cache: CacheFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first undecodable read logs a WARNING; another one within the interval does not."""
    caplog.set_level(logging.WARNING, logger="tiercache")
    redis_client.set(f"{prefix}:ns:s:k1", b"foreign one")
    redis_client.set(f"{prefix}:ns:s:k2", envelope(b"\xc1"))
    cache = make_cache(tiers=[tc.MemoryTier(), tc.RedisTier(redis_url)], prefix=prefix)
    ns = cache.namespace("ns")

    def undecodable_records() -> list[logging.LogRecord]:
        return [r for r in caplog.records
                if r.levelno == logging.WARNING and "undecodable" in r.getMessage()]

    assert ns.get("k1") is None
    first = undecodable_records()
    assert len(first) == 1
    assert f"{prefix}:ns:s:k1" in first[0].getMessage()
    assert ns.get("k2") is None
    assert ns.get("k1") is None
    assert len(undecodable_records()) == 1
    assert cache.stats()["namespaces"]["ns"]["tiers"]["L2:redis"]["undecodable"] == 3


# -- the embedded server -----------------------------------------------------------


def test_embedded_tiers_share_one_server_at_tier_level() -> None:
    """Bytes written through one RedisTier.embedded() are read through another and RedisTier()."""
    one, two, three = tc.RedisTier.embedded(), tc.RedisTier(), tc.RedisTier.embedded()
    one.set_many([("embshare-tier:k", b"\x01\xc0", None, 2)], 0.0)
    assert two.get_many(["embshare-tier:k"], 0.0) == [(b"\x01\xc0", None)]
    assert three.get_many(["embshare-tier:k"], 0.0) == [(b"\x01\xc0", None)]
    three.delete_many(["embshare-tier:k"])
    assert one.get_many(["embshare-tier:k"], 0.0) == [None]


def test_embedded_tiers_share_one_server(make_cache: CacheFactory) -> None:
    """RedisTier.embedded() and RedisTier() in two caches see each other's values."""
    writer = make_cache(tiers=[tc.RedisTier.embedded()], prefix="embshare")
    reader = make_cache(tiers=[tc.RedisTier()], prefix="embshare")
    third = make_cache(tiers=[tc.RedisTier.embedded(ttl=60)], prefix="embshare")
    writer.namespace("ns").set("k", {"v": 1})
    assert reader.namespace("ns").get("k") == {"v": 1}
    assert third.namespace("ns").get("k") == {"v": 1}
    reader.namespace("ns").delete("k")
    assert writer.namespace("ns").get("k", default=tc.MISSING) is tc.MISSING


def test_embedded_tier_is_not_the_real_server(
    redis_url: str, redis_client: Any, prefix: str, make_cache: CacheFactory
) -> None:
    """The embedded server is in-process: nothing written to it reaches the real Redis."""
    tier = tc.RedisTier.embedded()
    seed(make_cache(tiers=[tier], prefix=prefix).namespace("ns"), {"k": 1})
    assert tier.get_many([f"{prefix}:ns:s:k"], 0.0)[0] is not None
    assert redis_client.exists(f"{prefix}:ns:s:k") == 0
    assert "embedded" in repr(tc.RedisTier.embedded())


# -- timeouts and a server that is down --------------------------------------------


def test_refused_connection_fails_fast(prefix: str) -> None:
    """A tier on a port where nothing listens raises TierUnavailable on the refusal itself."""
    import redis

    tier = tc.RedisTier(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    with pytest.raises(TierUnavailable) as read:
        tier.get_many([f"{prefix}:x"], 0.0)
    with pytest.raises(TierUnavailable) as write:
        tier.set_many([(f"{prefix}:x", b"\x01\xc0", None, 2)], 0.0)
    # A refusal, not a timeout: nothing waited for `timeout` to pass.
    for info in (read, write):
        assert isinstance(info.value.__cause__, redis.ConnectionError)
        assert not isinstance(info.value.__cause__, redis.TimeoutError)
    assert tier.ping() is False


def test_hung_server_is_bounded_by_timeout(black_hole: int, prefix: str) -> None:
    """A server that accepts and never answers costs at most about `timeout` per call."""
    import redis

    tier = tc.RedisTier(f"redis://127.0.0.1:{black_hole}/0", timeout=0.1)
    with pytest.raises(TierUnavailable) as info:
        tier.get_many([f"{prefix}:x"], 0.0)
    # One attempt, ended by its socket timeout: no retry stretched the call.
    assert isinstance(info.value.__cause__, redis.TimeoutError)
    assert connection_attempts(black_hole) == 1
    tier.close()


@pytest.mark.parametrize("down", ["refused", "hung"])
def test_namespace_degrades_to_the_store_when_redis_is_down(
    down: str, black_hole: int, redis_url: str, prefix: str, make_cache: CacheFactory
) -> None:
    """With Redis unreachable, get/get_many/set/delete work on the store, fast, and count tier
    errors."""
    port = free_port() if down == "refused" else black_hole
    store = tc.MappingStore({"k": "v", "j": "w"})
    cache = make_cache(
        tiers=[tc.RedisTier(f"redis://127.0.0.1:{port}/0", timeout=0.1)], store=store, prefix=prefix
    )
    ns = cache.namespace("ns")
    assert ns.get("k") == "v"
    # One bounded attempt at the dead tier, then the store.
    assert cache.stats()["namespaces"]["ns"]["tiers"]["L1:redis"]["errors"] == 1
    if down == "hung":
        assert connection_attempts(black_hole) == 1
    assert ns.get_many(["k", "j", "zz"]) == {"k": "v", "j": "w"}
    ns.set("n", 1)
    ns.delete("j")
    assert store.mapping == {"k": "v", "n": 1}
    stats = cache.stats()["namespaces"]["ns"]
    assert stats["tiers"]["L1:redis"]["errors"] >= 4
    assert stats["store"]["hits"] == 3


def test_l1_keeps_serving_when_l2_is_down(make_cache: CacheFactory, prefix: str) -> None:
    """With L1 in front of a dead L2, a store value is cached in L1 and served from there."""
    store = tc.MappingStore({"k": "v"})
    cache = make_cache(
        tiers=[tc.MemoryTier(), tc.RedisTier(f"redis://127.0.0.1:{free_port()}/0", timeout=0.1)],
        store=store, prefix=prefix,
    )
    ns = cache.namespace("ns")
    assert ns.get("k") == "v"
    assert ns.get("k") == "v"
    stats = cache.stats()["namespaces"]["ns"]
    assert stats["tiers"]["L1:memory"]["hits"] == 1
    assert stats["store"]["hits"] == 1


def test_a_failing_tier_is_skipped_after_repeated_failures(
    black_hole: int, prefix: str, make_cache: CacheFactory
) -> None:
    """DESIGN 1: after repeated failures the tier is skipped, so reads stop paying its timeout."""
    # A long cooldown: no probe of the dead server during the test.
    tier = tc.RedisTier(f"redis://127.0.0.1:{black_hole}/0", timeout=0.1, cooldown=60)
    store = tc.MappingStore({f"k{i}": i for i in range(20)})
    cache = make_cache(tiers=[tier], store=store, prefix=prefix)
    ns = cache.namespace("ns")
    for i in range(3):  # repeated failures
        assert ns.get(f"k{i}") == i
    attempts = connection_attempts(black_hole)
    assert attempts >= 3, "the failing reads never reached the dead server"
    for i in range(3, 8):
        assert ns.get(f"k{i}") == i
    assert connection_attempts(black_hole) == attempts, "the dead tier was not skipped"


# -- secrets and configuration -----------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "redis://user:secret@127.0.0.1:1/0",
        "redis://:secret@127.0.0.1:1/0",
        "rediss://user:secret@127.0.0.1:1/0",
        "redis://user:se@cret@127.0.0.1:1/0",
        "redis://127.0.0.1:1/0?password=secret",
    ],
)
def test_password_never_appears_in_repr_or_errors(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The URL's password is absent from repr/str of the tier and cache, errors and logs."""
    caplog.set_level(logging.DEBUG)
    tier = tc.RedisTier(url, timeout=0.2)
    cache = tc.Cache(tiers=[tier], prefix="pw", bus=False)
    try:
        texts = [repr(tier), str(tier), repr(cache)]
        with pytest.raises(TierUnavailable) as info:
            tier.get_many(["pw:x"], 0.0)
        texts.append(str(info.value))
        cache.namespace("ns").get("x")  # degrades, logs a warning
        texts.append(caplog.text)
        secret = "se@cret" if "se@cret" in url else "secret"
        for text in texts:
            assert secret not in text
    finally:
        cache.close()


def test_url_and_client_together_are_refused(redis_client: Any) -> None:
    """RedisTier(url, client=...) raises ConfigurationError."""
    with pytest.raises(ConfigurationError):
        tc.RedisTier("redis://127.0.0.1:6379/0", client=redis_client)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:6379", "postgresql://127.0.0.1:5432/test", "127.0.0.1:6379", "",
     "memcached://127.0.0.1:11211", 6379, b"redis://127.0.0.1:6379/0",
     "redis://127.0.0.1:notaport/0"],
    ids=repr,
)
def test_non_redis_urls_are_refused(url: Any) -> None:
    """A URL that is not redis://, rediss:// or unix:// (or is malformed) raises
    ConfigurationError."""
    with pytest.raises(ConfigurationError):
        tc.RedisTier(url)


def test_refused_url_error_does_not_leak_password() -> None:
    """The ConfigurationError for a bad URL does not repeat its password."""
    with pytest.raises(ConfigurationError) as info:
        tc.RedisTier("http://user:secret@127.0.0.1:6379/0")
    assert "secret" not in str(info.value)


@pytest.mark.parametrize("kwargs", [{"timeout": 0}, {"timeout": -1}, {"timeout": float("nan")},
                                    {"ttl": 0}, {"ttl": float("inf")}], ids=repr)
def test_bad_timeout_or_ttl_is_refused(kwargs: dict[str, Any]) -> None:
    """Non-positive or non-finite timeout/ttl raise ConfigurationError."""
    with pytest.raises(ConfigurationError):
        tc.RedisTier("redis://127.0.0.1:6379/0", **kwargs)


def test_redis_tier_is_a_serialized_tier(redis_url: str) -> None:
    """RedisTier satisfies the Tier protocol and stores bytes; close() is idempotent."""
    tier = tc.RedisTier(redis_url)
    assert isinstance(tier, tc.Tier)
    assert tier.serialized is True
    assert tier.ping() is True
    tier.close()
    tier.close()
