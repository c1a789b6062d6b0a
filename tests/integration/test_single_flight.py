"""Single-flight: concurrent misses of one key cause one call, across threads, coroutines and
processes.

Every wait is bounded; every process a test starts is killed by pid when
the test ends.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

import tiercache as tc
from tiercache._engine.read import LEASE_TTL

ROOT = Path(__file__).resolve().parents[2]
N = 50
SLOW = 0.05
"""Seconds the cached function takes: long enough for every caller to miss."""

STACKS = ["memory", "redis", "memory+redis"]


def make_tiers(stack: str, redis_url: str | None) -> list[Any]:
    """The tier stack named ``stack``; Redis tiers on the real server."""
    tiers: list[Any] = []
    if "memory" in stack:
        tiers.append(tc.MemoryTier())
    if "redis" in stack:
        assert redis_url is not None
        tiers.append(tc.RedisTier(redis_url, timeout=1.0))
    return tiers


@pytest.fixture
def stack_tiers(
    request: pytest.FixtureRequest, prefix: str
) -> Iterator[Callable[[str], list[Any]]]:
    """Build a stack; Redis (and the cleanup of the prefix's keys) only when it has Redis."""
    used: list[str] = []

    def build(stack: str) -> list[Any]:
        url = request.getfixturevalue("redis_url") if "redis" in stack else None
        if url is not None:
            used.append(url)
        return make_tiers(stack, url)

    yield build
    for url in used[:1]:
        import redis

        client = redis.Redis.from_url(url)
        try:
            keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            if keys:
                client.unlink(*keys)
        finally:
            client.close()


# -- threads ------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_fifty_threads_missing_one_key_cause_one_call(
    stack: str, stack_tiers: Callable[[str], list[Any]], prefix: str
) -> None:
    """50 threads released by a barrier onto one missing key: the function runs once."""
    calls: list[int] = []
    lock = threading.Lock()
    with tc.Cache(tiers=stack_tiers(stack), prefix=prefix) as cache:

        @cache.cached(namespace="threads")
        def slow(x: int) -> dict[str, int]:
            with lock:
                calls.append(x)
            time.sleep(SLOW)
            return {"x": x}

        barrier = threading.Barrier(N)
        results: list[Any] = []
        errors: list[Exception] = []

        def worker() -> None:
            try:
                barrier.wait(timeout=10)
                value = slow(1)
                with lock:
                    results.append(value)
            except Exception as exc:  # noqa: BLE001 - reported below, never lost in a thread
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(N)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in threads), "a thread hung"
        assert errors == []
        assert results == [{"x": 1}] * N
        assert len(calls) == 1, f"{len(calls)} calls for one key"


def test_a_failing_call_reaches_every_waiter_and_is_not_cached() -> None:
    """50 threads on one key whose function raises: one call, all 50 see the error, the next call
    retries."""
    calls: list[int] = []
    lock = threading.Lock()
    with tc.Cache(tiers=[tc.MemoryTier()]) as cache:

        @cache.cached(namespace="failing")
        def broken(x: int) -> int:
            with lock:
                calls.append(x)
            time.sleep(SLOW)
            raise RuntimeError("backend down")

        barrier = threading.Barrier(N)
        errors: list[Exception] = []

        def worker() -> None:
            barrier.wait(timeout=10)
            try:
                broken(1)
            except Exception as exc:  # noqa: BLE001 - every error is the assertion
                with lock:
                    errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(N)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in threads)
        assert len(errors) == N
        assert all("backend down" in str(e) for e in errors), {type(e) for e in errors}
        assert len(calls) == 1
        with pytest.raises(Exception, match="backend down"):
            broken(1)
        assert len(calls) == 2


# -- coroutines -----------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("cache_class", [tc.Cache, tc.AsyncCache], ids=["Cache", "AsyncCache"])
def test_fifty_coroutines_missing_one_key_cause_one_call(
    cache_class: type[tc.Cache], stack: str, stack_tiers: Callable[[str], list[Any]], prefix: str
) -> None:
    """asyncio.gather of 50 awaits of one missing key: the async function runs once."""
    calls: list[int] = []
    tiers = stack_tiers(stack)

    async def main() -> list[Any]:
        cache = cache_class(tiers=tiers, prefix=prefix)
        try:

            @cache.cached(namespace="coros")
            async def slow(x: int) -> dict[str, int]:
                calls.append(x)
                await asyncio.sleep(SLOW)
                return {"x": x}

            return await asyncio.wait_for(asyncio.gather(*(slow(1) for _ in range(N))), 30)
        finally:
            closed = cache.close()
            if asyncio.iscoroutine(closed):
                await closed

    results = asyncio.run(main())
    assert results == [{"x": 1}] * N
    assert len(calls) == 1, f"{len(calls)} calls for one key"


# -- bulk loading ---------------------------------------------------------------------------


class CountingStore(tc.MappingStore):
    """A MappingStore that records the keys of every load_many."""

    def __init__(self, data: dict[Any, Any] | None = None) -> None:
        super().__init__(data if data is not None else {})
        self.loads: list[list[Any]] = []

    def load_many(self, keys: Sequence[Any]) -> dict[Any, Any]:
        self.loads.append(list(keys))
        return super().load_many(keys)


def test_get_many_loader_gets_only_the_missing_keys_once_and_is_cached(
    redis_url: str, prefix: str
) -> None:
    """get_many(keys, loader=fn): fn called once with just the missing keys; its answer is
    cached."""
    store = CountingStore()
    loader_calls: list[list[Any]] = []

    def loader(keys: list[Any]) -> Mapping[Any, Any]:
        loader_calls.append(list(keys))
        return {k: f"loaded-{k}" for k in keys if k != "absent"}

    with tc.Cache(
        tiers=[tc.MemoryTier(), tc.RedisTier(redis_url, timeout=1.0)], store=store, prefix=prefix
    ) as cache:
        ns = cache.namespace("bulk")
        ns.set("a", "cached-a")
        keys = ["a", "b", 3, "absent"]
        assert ns.get_many(keys, loader=loader) == {
            "a": "cached-a", "b": "loaded-b", 3: "loaded-3",
        }
        assert len(loader_calls) == 1
        assert sorted(map(repr, loader_calls[0])) == sorted(map(repr, ["b", 3, "absent"]))
        assert store.loads == [], "the store was asked although a loader was given"
        assert ns.get_many(["a", "b", 3], loader=loader) == {
            "a": "cached-a", "b": "loaded-b", 3: "loaded-3",
        }
        assert len(loader_calls) == 1, "the loaded values were not cached"

    def refuse(keys: list[Any]) -> Mapping[Any, Any]:
        raise AssertionError(f"loader called for {keys!r}: L2 should have them")

    # Another process's view (fresh L1): the loaded values are in the real Redis.
    with tc.Cache(
        tiers=[tc.MemoryTier(), tc.RedisTier(redis_url, timeout=1.0)], prefix=prefix
    ) as other:
        assert other.namespace("bulk").get_many(["b", 3], loader=refuse) == {
            "b": "loaded-b", 3: "loaded-3",
        }


def test_concurrent_get_many_with_one_loader_loads_once() -> None:
    """20 threads asking get_many for the same missing keys: the loader runs once."""
    calls: list[list[Any]] = []
    lock = threading.Lock()

    def loader(keys: list[Any]) -> Mapping[Any, Any]:
        with lock:
            calls.append(list(keys))
        time.sleep(SLOW)
        return {k: k * 2 for k in keys}

    with tc.Cache(tiers=[tc.MemoryTier()]) as cache:
        ns = cache.namespace("bulk")
        barrier = threading.Barrier(20)
        results: list[Any] = []

        def worker() -> None:
            barrier.wait(timeout=10)
            got = ns.get_many([1, 2, 3], loader=loader)
            with lock:
                results.append(got)

        threads = [threading.Thread(target=worker) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in threads)
        assert results == [{1: 2, 2: 4, 3: 6}] * 20
        assert len(calls) == 1, calls


# -- processes ----------------------------------------------------------------------------------

_PROCESS = r"""
import json, sys, time
import redis
import tiercache as tc

url, prefix, role, go_key = sys.argv[1:5]
r = redis.Redis.from_url(url)
cache = tc.Cache(tiers=[tc.MemoryTier(), tc.RedisTier(url, timeout=1.0)], prefix=prefix)

@cache.cached(namespace="procs")
def slow(x):
    n = r.incr(prefix + ":test:calls")
    if role == "holder":
        r.set(prefix + ":test:started", 1)
        time.sleep(60)  # killed in here, holding the lease
    time.sleep(0.3)
    return {"by": role, "n": n}

print(json.dumps({"ready": True}), flush=True)
deadline = time.monotonic() + 30
while not r.exists(go_key):
    if time.monotonic() > deadline:
        sys.exit("never told to go")
    time.sleep(0.001)
started = time.monotonic()
value = slow(1)
print(json.dumps({"value": value, "elapsed": time.monotonic() - started}), flush=True)
cache.close()
"""


class Proc:
    """A python -c process running _PROCESS; JSON lines read with a deadline."""

    def __init__(self, redis_url: str, prefix: str, role: str) -> None:
        self.go_key = f"{prefix}:test:go:{role}"
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _PROCESS, redis_url, prefix, role, self.go_key],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def recv(self, timeout: float) -> Any:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"pid {self.proc.pid}: no answer within {timeout} s") from None
        if line is None:
            self.proc.wait(timeout=5)
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"pid {self.proc.pid} exited {self.proc.returncode}: {err}")
        return json.loads(line)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Processes started by a test, SIGKILLed by pid at its end."""
    started: list[Proc] = []
    yield started
    for p in started:
        p.kill()


def test_two_processes_missing_one_key_cause_one_call(
    redis_url: str, redis_client: Any, prefix: str, procs: list[Proc]
) -> None:
    """Two processes sharing Redis miss one key at once: one call; both get its value."""
    procs += [Proc(redis_url, prefix, "first"), Proc(redis_url, prefix, "second")]
    for p in procs:
        assert p.recv(30)["ready"]
    with redis_client.pipeline() as pipe:
        for p in procs:
            pipe.set(p.go_key, 1)
        pipe.execute()
    answers = [p.recv(30) for p in procs]
    assert int(redis_client.get(f"{prefix}:test:calls")) == 1
    values = [a["value"] for a in answers]
    assert values[0] == values[1] and values[0]["n"] == 1, values


def test_waiter_takes_over_when_the_lease_holder_dies(
    redis_url: str, redis_client: Any, prefix: str, procs: list[Proc]
) -> None:
    """SIGKILL the process holding the lease mid-load: the waiter loads itself within
    ~LEASE_TTL*2."""
    holder, waiter = Proc(redis_url, prefix, "holder"), Proc(redis_url, prefix, "waiter")
    procs += [holder, waiter]
    assert holder.recv(30)["ready"] and waiter.recv(30)["ready"]
    redis_client.set(holder.go_key, 1)
    deadline = time.monotonic() + 20
    while not redis_client.exists(f"{prefix}:test:started"):
        assert time.monotonic() < deadline, "the holder never started loading"
        time.sleep(0.005)
    redis_client.set(waiter.go_key, 1)
    time.sleep(0.5)  # the waiter is now polling the holder's lease
    holder.kill()
    answer = waiter.recv(LEASE_TTL * 2 + 5)
    assert answer["value"]["by"] == "waiter"
    assert answer["elapsed"] < LEASE_TTL * 2 + 1, answer
    assert int(redis_client.get(f"{prefix}:test:calls")) == 2
