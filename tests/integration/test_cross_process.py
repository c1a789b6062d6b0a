"""Real separate processes sharing the real Redis and one SQLite file.

Each worker is ``tests/integration/_worker.py`` in a subprocess of its own,
driven over its stdin/stdout; every wait is bounded, and every process a
test starts is killed by pid when the test ends.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import tiercache as tc
from tiercache.testing.scheduler import ManualScheduler

WORKER = Path(__file__).with_name("_worker.py")
ABSENT = {"missing": True}
REPLY_TIMEOUT = 20.0
"""Seconds any one worker command may take before the test fails."""


class Worker:
    """One worker process: send a command, read its JSON reply (bounded)."""

    def __init__(self, config: dict[str, Any]) -> None:
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=env,
        )
        self.pid = self.proc.pid
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()
        ready = self.recv(30.0)
        assert ready.get("ready"), ready

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    def send(self, **command: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def recv(self, timeout: float = REPLY_TIMEOUT) -> Any:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"worker {self.pid} gave no answer in {timeout}s; "
                f"stderr: {''.join(self._stderr)[-2000:]}"
            ) from None
        if line is None:
            raise AssertionError(
                f"worker {self.pid} exited; stderr: {''.join(self._stderr)[-2000:]}"
            )
        try:
            reply = json.loads(line)
        except json.JSONDecodeError:
            return line.strip()
        if isinstance(reply, dict) and "error" in reply:
            raise AssertionError(f"worker {self.pid} failed: {reply['error']}")
        return reply

    def call(self, **command: Any) -> Any:
        self.send(**command)
        return self.recv()

    def stop(self) -> None:
        """Kill the process by its pid (idempotent) and reap it."""
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignorable
            pass
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass


@pytest.fixture
def spawn(redis_url: str, prefix: str, tmp_path: Path) -> Iterator[Any]:
    """``spawn(namespaces, **config)`` starts a worker; all are killed by pid at the end."""
    workers: list[Worker] = []

    def start(namespaces: dict[str, dict[str, str]], **config: Any) -> Worker:
        full = {
            "redis_url": redis_url,
            "prefix": prefix,
            "db": str(tmp_path / "store.db"),
            "namespaces": namespaces,
            **config,
        }
        worker = Worker(full)
        workers.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in workers:
            worker.stop()


def wait_for(predicate: Any, timeout: float, step: float = 0.005) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass; its last answer."""
    deadline = time.monotonic() + timeout
    for _ in range(1_000_000):  # bounded; the deadline ends it sooner
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)
    return False


def bus_listeners(client: Any, prefix: str) -> list[dict[str, Any]]:
    """CLIENT LIST entries of the bus listener connections of caches with ``prefix``."""
    return [c for c in client.client_list() if c.get("name") == f"tiercache-bus:{prefix}"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- invalidations reach another process's L1 -----------------------------------


def _prime(reader: Worker, ns: str, key: str, expected: Any) -> None:
    """Have ``reader`` hold ``key`` = ``expected`` in its L1.

    Bounded retries: the writer's own announcement of ``expected`` may reach
    the reader just after its read and (rightly) drop that copy.
    """

    def cached() -> bool:
        if reader.call(op="get", ns=ns, key=key)["value"] != expected:
            return False
        held = reader.call(op="l1", ns=ns, key=key)
        return bool(held["cached"] and held["value"] == expected)

    assert wait_for(cached, 2.0, 0.002), f"reader never held {key}={expected!r} in its L1"


def test_invalidations_reach_another_process_l1(spawn: Any) -> None:
    """set/delete/invalidate (Purge) and invalidate_all (Versioned) in A reach B's L1 within 1 s."""
    namespaces = {"p": {"invalidation": "purge"}, "v": {"invalidation": "versioned"}}
    a = spawn(namespaces)
    b = spawn(namespaces)
    delays: dict[str, list[float]] = {
        "set": [], "delete": [], "invalidate": [], "invalidate_all": []
    }
    per_kind = 50
    for i in range(per_kind * len(delays)):  # ~200 changes, bounded
        kind = list(delays)[i % len(delays)]
        ns = "v" if kind == "invalidate_all" else "p"
        key = f"k{i % 7}"
        old, new = f"old-{i}", f"new-{i}"
        a.call(op="set", ns=ns, key=key, value=old)
        _prime(b, ns, key, old)
        b.send(op="watch", ns=ns, key=key, old=old, timeout=1.0)
        assert b.recv() == {"watching": True}
        if kind == "set":
            done = a.call(op="set", ns=ns, key=key, value=new)
            expected: Any = new
        elif kind == "delete":
            done = a.call(op="delete", ns=ns, key=key)
            expected = ABSENT
        else:
            a.call(op="store_save", ns=ns, key=key, value=new)  # behind the cache's back
            done = a.call(op=kind, ns=ns, key=key)
            expected = new
        seen = b.recv(10.0)
        assert seen["seen"] is not None, f"{kind} of {key}: B still read {old!r} after 1 s"
        assert seen["value"] == expected, (kind, seen)
        assert seen["regressed"] == 0, f"{kind}: B read {old!r} again after the new value"
        delays[kind].append(max(0.0, seen["seen"] - done["done"]))
    every = [d for kind in delays.values() for d in kind]
    print(f"\npropagation A write -> B's L1 fresh over {len(every)} changes: "
          f"p50 {percentile(every, 0.5) * 1e3:.2f} ms, p99 {percentile(every, 0.99) * 1e3:.2f} ms, "
          f"max {max(every) * 1e3:.2f} ms")
    for kind, values in delays.items():
        print(f"  {kind:15s} n={len(values)} p50 {statistics.median(values) * 1e3:.2f} ms "
              f"p99 {percentile(values, 0.99) * 1e3:.2f} ms")
    assert max(every) < 1.0


def test_writer_without_l1_still_reaches_other_l1(spawn: Any) -> None:
    """A process whose only tier is Redis announces its writes: B's L1 drops the old copy."""
    namespaces = {"p": {"invalidation": "purge"}}
    a = spawn(namespaces, tiers="l2")
    b = spawn(namespaces)
    a.call(op="set", ns="p", key="k", value="old")
    _prime(b, "p", "k", "old")
    b.send(op="watch", ns="p", key="k", old="old", timeout=1.0)
    assert b.recv() == {"watching": True}
    a.call(op="set", ns="p", key="k", value="new")
    seen = b.recv(10.0)
    assert seen["seen"] is not None and seen["value"] == "new", (
        f"B's L1 kept serving the old value after an L2-only process wrote: {seen}"
    )


# -- write-back durability ---------------------------------------------------------


def test_write_back_survives_kill_9(spawn: Any, tmp_path: Path, redis_client: Any, prefix: str,
                                    redis_url: str) -> None:
    """A writer killed with SIGKILL before any flush loses none of its write-back writes."""
    n, rounds = 200, 3
    namespaces = {"wb": {"write": "back", "invalidation": "purge"}}
    a = spawn(namespaces, close=False)
    a.send(op="fill", ns="wb", n=n, rounds=rounds)
    assert a.recv(30.0) == "written"
    os.kill(a.pid, signal.SIGKILL)
    assert a.proc.wait(timeout=10) == -signal.SIGKILL
    expected = {f"k{i}": f"r{rounds - 1}-{i}" for i in range(n)}
    expected["k0"] = "last-k0"
    store = tc.SQLiteStore(tmp_path / "store.db").bind("wb")
    try:
        assert store.load_many(list(expected)) == {}, "the killed writer flushed before dying"
        assert redis_client.hlen(f"{prefix}:#wb:wb") == n
        b = spawn(namespaces)
        b.call(op="flush", ns="wb")
        assert store.load_many(list(expected)) == expected
        assert redis_client.hlen(f"{prefix}:#wb:wb") == 0
        # Replaying is harmless: another process flushes again, nothing changes.
        with tc.Cache(tiers=[tc.MemoryTier(), tc.RedisTier(redis_url)],
                      store=tc.SQLiteStore(tmp_path / "store.db"), prefix=prefix,
                      scheduler=ManualScheduler()) as cache:
            ns = cache.namespace("wb", write=tc.WriteBack(), invalidation=tc.Purge())
            ns.flush()
            ns.flush()
            assert ns.get_many(list(expected)) == expected
            assert ns.stats()["write_back"]["store_errors"] == 0
        b.call(op="flush", ns="wb")
        assert store.load_many(list(expected)) == expected
    finally:
        store.close()


def test_concurrent_flushers_never_write_an_older_value(
    spawn: Any, tmp_path: Path, redis_client: Any, prefix: str
) -> None:
    """Two processes writing and flushing one journal at once: the store ends at each key's last
    value."""
    keys = 12
    namespaces = {"cf": {"write": "back", "invalidation": "purge"}}
    a = spawn(namespaces)
    b = spawn(namespaces)
    store = tc.SQLiteStore(tmp_path / "store.db").bind("cf")
    names = [f"k{i}" for i in range(keys)]
    regressions: list[tuple[str, int, int]] = []
    stop = threading.Event()

    def monitor() -> None:
        last: dict[str, int] = {}
        for _ in range(100_000):  # bounded; stop ends it sooner
            if stop.is_set():
                return
            try:
                current = store.load_many(names)
            except tc.StoreError:
                continue  # a locked database: read again
            for key, value in current.items():
                if value < last.get(key, 0):
                    regressions.append((key, last[key], value))
                last[key] = max(value, last.get(key, 0))
            time.sleep(0.003)

    watcher = threading.Thread(target=monitor, daemon=True)
    watcher.start()
    try:
        a.send(op="interleave", ns="cf", keys=keys, writes=300, flush_every=7, seed=1)
        b.send(op="interleave", ns="cf", keys=keys, writes=300, flush_every=5, seed=2)
        a.recv(60.0)
        b.recv(60.0)
    finally:
        stop.set()
        watcher.join(10)
    a.call(op="flush", ns="cf")
    final = store.load_many(names)
    last_written = {k: int(redis_client.get(f"{prefix}:test-ctr:{k}") or 0) for k in names}
    store.close()
    assert not regressions, f"the store went back to older values: {regressions[:5]}"
    assert redis_client.hlen(f"{prefix}:#wb:cf") == 0
    assert final == {k: v for k, v in last_written.items() if v}, (final, last_written)
    assert b.call(op="get_many", ns="cf", keys=names)["values"] == final


# -- the bus survives a killed listener connection -----------------------------------


def test_killed_bus_connection_leaves_no_stale_l1(
    spawn: Any, redis_client: Any, prefix: str
) -> None:
    """CLIENT KILL of the bus listeners while A writes: B's L1 is fresh within 3 s of each kill."""
    namespaces = {"p": {"invalidation": "purge"}}
    a = spawn(namespaces)
    b = spawn(namespaces)
    keys = [f"k{i}" for i in range(10)]
    a.call(op="set_many", ns="p", items=dict.fromkeys(keys, "v0"))
    for key in keys:
        _prime(b, "p", key, "v0")
    assert wait_for(lambda: len(bus_listeners(redis_client, prefix)) >= 2, 3.0)
    for round_ in range(1, 4):
        listeners = bus_listeners(redis_client, prefix)
        assert listeners, "no bus listener connection to kill"
        for entry in listeners:
            redis_client.execute_command("CLIENT", "KILL", "ID", entry["id"])
        value = f"v{round_}"
        for key in keys:  # while the listeners reconnect
            a.call(op="set", ns="p", key=key, value=value)

        def fresh(value: str = value) -> bool:
            got = b.call(op="get_many", ns="p", keys=keys)["values"]
            return bool(got == dict.fromkeys(keys, value))

        assert wait_for(fresh, 3.0, 0.01), (
            f"round {round_}: B still serves stale L1 copies 3 s after the writes: "
            f"{b.call(op='get_many', ns='p', keys=keys)['values']}"
        )
        killed = {entry["id"] for entry in listeners}

        def reconnected(killed: set[str] = killed) -> bool:
            return any(c["id"] not in killed for c in bus_listeners(redis_client, prefix))

        assert wait_for(reconnected, 3.0), "the bus listener did not reconnect"
        for key in keys:
            cached = b.call(op="l1", ns="p", key=key)
            assert not cached["cached"] or cached["value"] == value, (key, cached)


# -- the heartbeat: a deaf bus shortens L1 lifetimes ----------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A redis-server of the test's own on a free port: ``(url, pid)``; stopped by pid."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.path.exists(binary):
        pytest.skip("redis-server binary not found")
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        assert wait_for(up, 5.0, 0.02), "private redis-server did not start"
        client.close()
        yield f"redis://127.0.0.1:{port}/0", proc.pid
    finally:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                pass
        proc.wait(timeout=10)


def test_unhealthy_bus_caps_l1_ttl_at_max_staleness(private_redis: tuple[str, int]) -> None:
    """While the heartbeat is missing (Redis SIGSTOPped), L1 fills live at most max_staleness."""
    url, pid = private_redis
    max_staleness = 0.5
    store = tc.MappingStore({"k": "v1"})
    cache = tc.Cache(
        tiers=[tc.MemoryTier(), tc.RedisTier(url, timeout=0.05)],
        store=store,
        prefix="hb",
        max_staleness=max_staleness,
    )
    stopped = False
    try:
        ns = cache.namespace("n", invalidation=tc.Purge())
        l1 = cache.tiers[0]
        bus = cache._bus  # the listener whose health the test watches
        assert bus is not None and bus.healthy
        assert ns.get("k") == "v1"
        _value, expires_at, _size = l1.lookup(ns.tier_key("k"))  # type: ignore[attr-defined]
        assert expires_at - cache.clock() > max_staleness, "a healthy bus should not cap L1"
        os.kill(pid, signal.SIGSTOP)
        stopped = True
        assert wait_for(lambda: not bus.healthy, 3.0), "the bus never noticed the silence"
        for key, value in (("k", "v1"), ("other", None)):
            assert ns.get(key) == value
        store.mapping["fresh"] = "f1"
        assert ns.get("fresh") == "f1"
        for key in ("k", "fresh"):
            entry = l1.lookup(ns.tier_key(key))  # type: ignore[attr-defined]
            remaining = entry[1] - cache.clock()
            assert 0 < remaining <= max_staleness, (key, remaining)
        # Staleness is bounded: a change behind the cache's back shows within max_staleness.
        store.mapping["fresh"] = "f2"
        assert wait_for(lambda: ns.get("fresh") == "f2", max_staleness + 1.0, 0.02)
        os.kill(pid, signal.SIGCONT)
        stopped = False
        assert wait_for(lambda: bus.healthy, 5.0), "the bus did not recover after SIGCONT"
        ns.set("after", 1)
        entry = l1.lookup(ns.tier_key("after"))  # type: ignore[attr-defined]
        assert entry[1] - cache.clock() > max_staleness
    finally:
        if stopped:
            os.kill(pid, signal.SIGCONT)
        cache.close()
