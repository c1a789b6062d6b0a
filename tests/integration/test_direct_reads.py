"""RedisTier's direct reads (``tiercache/redis/direct.py``) on the real Redis.

A tier built from a URL sends GET and MGET on connections it keeps itself,
not through redis-py's pool. What the pool's checkout did must still hold:
each answer belongs to its own command (threads, forks), a connection the
server closed while idle is replaced without a failed read, and ``close()``
leaves no connection open. Faults that need a server of the test's own
(timeouts, restarts) are in ``tests/reliability/test_faults.py``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import tiercache as tc
from tiercache.redis.direct import MAX_IDLE

pytestmark = pytest.mark.redis


@pytest.fixture
def tier(redis_url: str) -> Iterator[tc.RedisTier]:
    tier = tc.RedisTier(redis_url)
    yield tier
    tier.close()


def put(tier: tc.RedisTier, items: dict[str, Any], now: float = 0.0) -> None:
    tier.set_many([(key, value, None, 0) for key, value in items.items()], now)


def direct_addrs(tier: tc.RedisTier) -> set[str]:
    """``ip:port`` of the tier's idle direct connections, as CLIENT LIST shows them."""
    assert tier._direct is not None
    return {
        "{}:{}".format(*conn._sock.getsockname()[:2])
        for conn in tier._direct._idle
        if conn._sock
    }


def server_clients(client: Any) -> dict[str, int]:
    """``addr -> id`` of every client the server has."""
    return {entry["addr"]: int(entry["id"]) for entry in client.client_list()}


def test_a_tier_from_a_url_reads_directly_and_answers_as_the_client_does(
    tier: tc.RedisTier, redis_client: Any, prefix: str
) -> None:
    """GET, MGET, misses and over-long keys: the same bytes as redis-py's client returns."""
    assert tier._direct is not None
    long_key = f"{prefix}:ns:" + "x" * 2000
    keys = [f"{prefix}:a", f"{prefix}:b", long_key]
    put(tier, {keys[0]: b"\x01one", keys[1]: b"\x01two", long_key: b"\x01long"})
    missing = f"{prefix}:missing"
    assert tier.get_one(keys[0]) == (b"\x01one", None)
    assert tier.get_one(missing) is None
    assert tier.get_one(long_key) == (b"\x01long", None)
    assert tier.get_many([*keys, missing], 0.0) == [
        (b"\x01one", None), (b"\x01two", None), (b"\x01long", None), None
    ]
    # Nothing went through the client's pool: its connections were never checked out.
    assert tier.client.connection_pool._created_connections == 1  # set_many's pipeline only
    assert len(tier._direct._idle) == 1


def test_a_client_passed_in_is_used_as_it_is(redis_url: str, prefix: str) -> None:
    """With ``client=``, reads go through that client's own methods (its cache, its hooks)."""
    client = redis.Redis.from_url(redis_url)
    tier = tc.RedisTier(client=client)
    try:
        assert tier._direct is None
        put(tier, {f"{prefix}:a": b"\x01one"})
        assert tier.get_one(f"{prefix}:a") == (b"\x01one", None)
        assert tier.get_many([f"{prefix}:a", f"{prefix}:b"], 0.0) == [(b"\x01one", None), None]
    finally:
        tier.close()


def test_threads_each_get_their_own_answers(
    tier: tc.RedisTier, prefix: str, in_threads: Any
) -> None:
    """16 threads x 300 reads of their own key: no answer crosses to another thread."""
    keys = {n: f"{prefix}:t{n}" for n in range(16)}
    put(tier, {key: b"\x01%d" % n for n, key in keys.items()})
    wrong: list[tuple[int, Any]] = []

    def reader(n: int) -> None:
        for _ in range(300):
            got = tier.get_one(keys[n])
            if got != (b"\x01%d" % n, None):
                wrong.append((n, got))

    in_threads(reader, 16)
    assert wrong == []
    assert tier._direct is not None and 1 <= len(tier._direct._idle) <= MAX_IDLE


def test_a_connection_killed_while_idle_is_replaced_without_a_failed_read(
    tier: tc.RedisTier, redis_client: Any, prefix: str
) -> None:
    """CLIENT KILL of the idle direct connection: the next read answers, no failure counted."""
    put(tier, {f"{prefix}:a": b"\x01one"})
    assert tier.get_one(f"{prefix}:a") == (b"\x01one", None)
    (addr,) = direct_addrs(tier)
    redis_client.execute_command("CLIENT", "KILL", "ID", server_clients(redis_client)[addr])
    assert tier.get_one(f"{prefix}:a") == (b"\x01one", None)
    assert tier._failures == 0 and tier.breaker_opened == 0
    assert addr not in server_clients(redis_client)  # the dead one was not kept
    assert direct_addrs(tier) and not direct_addrs(tier) & {addr}


def test_close_disconnects_the_idle_connections(
    redis_url: str, redis_client: Any, prefix: str, in_threads: Any
) -> None:
    """After ``close()`` the server no longer lists any of the tier's direct connections."""
    tier = tc.RedisTier(redis_url)
    put(tier, {f"{prefix}:a": b"\x01one"})
    in_threads(lambda _: [tier.get_one(f"{prefix}:a") for _ in range(50)], 4)  # a few idle
    addrs = direct_addrs(tier)
    assert addrs and addrs <= set(server_clients(redis_client))
    tier.close()
    deadline = time.monotonic() + 5.0
    for _ in range(500):  # bounded; the server drops closed clients within a moment
        if not addrs & set(server_clients(redis_client)) or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert not addrs & set(server_clients(redis_client))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_reads_on_connections_of_its_own(tier: tc.RedisTier, prefix: str) -> None:
    """Parent and child read at once after a fork: neither gets the other's answers."""
    put(tier, {f"{prefix}:parent": b"\x01parent", f"{prefix}:child": b"\x01child"})
    assert tier.get_one(f"{prefix}:parent") == (b"\x01parent", None)  # an idle connection now
    inherited = direct_addrs(tier)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its wrong answers and whether it reused a socket
        try:
            wrong = sum(tier.get_one(f"{prefix}:child") != (b"\x01child", None)
                        for _ in range(500))
            reused = bool(direct_addrs(tier) & inherited)
            os.write(write_end, b"%d %d" % (wrong, reused))
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        wrong_here = sum(tier.get_one(f"{prefix}:parent") != (b"\x01parent", None)
                         for _ in range(500))
        with os.fdopen(read_end, "rb") as pipe:
            report = pipe.read()  # the child writes once, then exits: EOF ends this read
    finally:
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    wrong_there, reused = map(int, report.split())
    assert (wrong_here, wrong_there, reused) == (0, 0, 0)
    assert direct_addrs(tier) == inherited
