"""Integration fixtures: a known workload (metrics), dogpile's marks, the HTTP examples' runner."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import tiercache as tc

L1_HITS = 7
L2_HITS = 4
STORE_LOADS = 3  # keys the store has; one more key it has not
WRITE_BACK_SETS = 5

L2_KEYS = [f"warm:{i}" for i in range(L2_HITS)]
STORE_KEYS = [f"cold:{i}" for i in range(STORE_LOADS)]
ABSENT = "absent"
ORDER_KEYS = [f"order:{i}" for i in range(WRITE_BACK_SETS)]
EVERY_KEY = [*L2_KEYS, *STORE_KEYS, ABSENT, *ORDER_KEYS]

EXPECTED_REQUESTS = {
    ("L1:memory", "hit"): L1_HITS,
    ("L1:memory", "miss"): L2_HITS + STORE_LOADS + 1,
    ("L2:redis", "hit"): L2_HITS,
    ("L2:redis", "miss"): STORE_LOADS + 1,
    ("store", "hit"): STORE_LOADS,
    ("store", "miss"): 1,
}
"""Requests of namespace "users" by (layer, result) after the workload."""


def users_store() -> tc.MappingStore:
    return tc.MappingStore({key: {"key": key} for key in [*L2_KEYS, *STORE_KEYS]})


def tiers(redis_url: str) -> list[Any]:
    return [tc.MemoryTier(maxsize=1000), tc.RedisTier(redis_url, timeout=1.0)]


@pytest.fixture
def warm_redis(redis_url: str, prefix: str) -> None:
    """Another cache on the same Redis and prefix loads L2_KEYS: in Redis, not in our L1."""
    with tc.Cache(tiers=tiers(redis_url), store=users_store(), prefix=prefix) as other:
        users = other.namespace("users")
        for key in L2_KEYS:
            assert users.get(key) == {"key": key}


@pytest.fixture
def cache(redis_url: str, prefix: str, warm_redis: None) -> Iterator[tc.Cache]:
    """The cache under test, before the workload."""
    with tc.Cache(tiers=tiers(redis_url), store=users_store(), prefix=prefix) as made:
        yield made


@pytest.fixture
def acache(redis_url: str, prefix: str, warm_redis: None) -> Iterator[tc.AsyncCache]:
    """The AsyncCache under test, before the workload (closed by the sync close at teardown)."""
    made = tc.AsyncCache(tiers=tiers(redis_url), store=users_store(), prefix=prefix)
    yield made
    tc.Cache.close(made)


class Workload:
    """The workload and its exact counts, handed to tests by the ``workload`` fixture."""

    l1_hits = L1_HITS
    l2_hits = L2_HITS
    store_loads = STORE_LOADS
    write_back_sets = WRITE_BACK_SETS
    keys = EVERY_KEY
    requests = EXPECTED_REQUESTS

    @staticmethod
    def drive(cache: tc.Cache) -> None:
        """L2 hits, store loads, one absent key, L1 hits, then write-back sets flushed."""
        users = cache.namespace("users")
        for key in L2_KEYS:
            assert users.get(key) == {"key": key}
        for key in STORE_KEYS:
            assert users.get(key) == {"key": key}
        assert users.get(ABSENT) is None
        for _ in range(L1_HITS):
            assert users.get(STORE_KEYS[0]) == {"key": STORE_KEYS[0]}
        orders = cache.namespace(
            "orders", write=tc.WriteBack(flush_interval=3600), store=tc.MappingStore()
        )
        for key in ORDER_KEYS:
            orders.set(key, 1)
        cache.flush()

    @staticmethod
    async def adrive(cache: tc.AsyncCache) -> None:
        """``drive`` awaited through AsyncCache's namespaces."""
        users = cache.namespace("users")
        for key in L2_KEYS:
            assert await users.get(key) == {"key": key}
        for key in STORE_KEYS:
            assert await users.get(key) == {"key": key}
        assert await users.get(ABSENT) is None
        for _ in range(L1_HITS):
            assert await users.get(STORE_KEYS[0]) == {"key": STORE_KEYS[0]}
        orders = cache.namespace(
            "orders", write=tc.WriteBack(flush_interval=3600), store=tc.MappingStore()
        )
        for key in ORDER_KEYS:
            await orders.set(key, 1)
        await cache.flush()


@pytest.fixture
def workload() -> Workload:
    """The known workload (``drive``/``adrive``) and the counts it must produce."""
    return Workload()



def pytest_configure(config: pytest.Config) -> None:
    """Declare dogpile's ``time_intensive`` mark, which ``--strict-markers`` would refuse."""
    config.addinivalue_line("markers", "time_intensive: a slow test of dogpile's shipped suites")


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def exercise_example(redis_url: str, prefix: str) -> Callable[[str], None]:
    """``exercise_example(script)``: run examples/<script> on 127.0.0.1 and check its cache.

    The example runs as a subprocess on a free port against the real Redis;
    it is stopped by its pid, within bounded waits.
    """

    def run(script: str) -> None:
        port = _free_port()
        command = [sys.executable, str(EXAMPLES / script), "--port", str(port),
                   "--redis", redis_url, "--prefix", prefix]
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                try:
                    httpx.get(base + "/me", timeout=1)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, f"{script} did not start"
                    time.sleep(0.1)
            _check_example(base)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    return run


def _check_example(base: str) -> None:
    first = httpx.get(base + "/now", timeout=10)
    second = httpx.get(base + "/now", timeout=10)
    assert first.status_code == 200 and second.text == first.text  # served from the cache
    assert "age" in second.headers and second.headers["cache-control"] == "public, max-age=5"
    etag = second.headers["etag"]
    assert httpx.get(base + "/now", headers={"If-None-Match": etag}, timeout=10).status_code == 304
    tagged = httpx.get(base + "/users/7", timeout=10)
    assert tagged.headers["surrogate-key"] == "user:7 users"
    assert "x-cache-tags" not in tagged.headers
    assert httpx.get(base + "/users/7", timeout=10).text == tagged.text
    assert httpx.get(base + "/me", timeout=10).text != httpx.get(base + "/me", timeout=10).text
