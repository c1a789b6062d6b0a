"""A separate process holding a tiercache Cache, driven by JSON lines on stdin.

Started by tests/integration/test_cross_process.py as
``python _worker.py '<json config>'``. It prints ``{"ready": ...}`` once the
cache is built, then answers each command line with one JSON line. Config:

    redis_url, prefix, db (SQLite file), tiers ("l1l2" | "l2" | "l1"),
    namespaces {name: {"write": "through"|"back"|"around",
                       "invalidation": "purge"|"versioned"|"ttl"}},
    manual (bool: ManualScheduler, so write-back flushes only on command),
    max_staleness (float)

Values travel as JSON; an absent key as ``{"missing": true}``. Every loop is
bounded; the process exits on ``{"op": "exit"}`` or at end of input.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import redis

import tiercache as tc
from tiercache.testing.scheduler import ManualScheduler

ABSENT = {"missing": True}


def out(message: Any) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def encode(value: Any) -> Any:
    return ABSENT if value is tc.MISSING else value


def build(config: dict[str, Any]) -> tuple[tc.Cache, dict[str, tc.Namespace]]:
    url = config["redis_url"]
    kind = config.get("tiers", "l1l2")
    tiers: list[Any] = []
    if "l1" in kind:
        tiers.append(tc.MemoryTier(maxsize=config.get("l1_maxsize", 10_000)))
    if "l2" in kind:
        tiers.append(tc.RedisTier(url, timeout=1.0))
    cache = tc.Cache(
        tiers=tiers,
        store=tc.SQLiteStore(config["db"]),
        prefix=config["prefix"],
        scheduler=ManualScheduler() if config.get("manual", True) else None,
        max_staleness=config.get("max_staleness", 1.0),
    )
    writes = {
        "through": tc.WriteThrough,
        "back": lambda: tc.WriteBack(flush_interval=3600.0, retry_backoff=0.01),
        "around": tc.WriteAround,
    }
    invalidations = {"purge": tc.Purge, "versioned": tc.Versioned, "ttl": lambda: tc.TTL(30)}
    namespaces = {
        name: cache.namespace(
            name,
            write=writes[spec.get("write", "through")](),
            invalidation=invalidations[spec.get("invalidation", "purge")](),
        )
        for name, spec in config["namespaces"].items()
    }
    return cache, namespaces


def watch(ns: tc.Namespace, key: str, old: Any, timeout: float) -> dict[str, Any]:
    """Read ``key`` until it is no longer ``old``; then keep reading to see it never comes back."""
    old = tc.MISSING if old == ABSENT else old
    deadline = time.monotonic() + timeout
    reads = 0
    seen_at = None
    value: Any = old
    for _ in range(10_000_000):  # bounded; the deadline ends it sooner
        value = ns.get(key, tc.MISSING)
        reads += 1
        if value != old:
            seen_at = time.monotonic()
            break
        if time.monotonic() >= deadline:
            break
        time.sleep(0.0001)  # let the bus thread have the interpreter
    regressed = 0
    if seen_at is not None:
        for _ in range(20):
            if ns.get(key, tc.MISSING) == old:
                regressed += 1
            time.sleep(0.0002)
    return {"seen": seen_at, "value": encode(value), "reads": reads, "regressed": regressed}


def interleave(
    ns: tc.Namespace, client: Any, prefix: str, keys: int, writes: int, flush_every: int, seed: int
) -> dict[str, Any]:
    """Write increasing values to shared keys, one writer per key at a time, flushing as we go.

    The lock spans taking the next value and writing it, so the order of a
    key's writes is the order of its values: the last write is the largest.
    """
    import random

    rng = random.Random(seed)
    flushes = 0
    for n in range(writes):
        key = f"k{rng.randrange(keys)}"
        with client.lock(f"{prefix}:test-lock:{key}", timeout=10, blocking_timeout=10):
            value = int(client.incr(f"{prefix}:test-ctr:{key}"))
            ns.set(key, value)
        if (n + 1) % flush_every == 0:
            ns.flush()
            flushes += 1
    ns.flush()
    return {"flushes": flushes + 1}


def handle(
    command: dict[str, Any],
    cache: tc.Cache,
    namespaces: dict[str, tc.Namespace],
    store: tc.SQLiteStore,
    client: Any,
    config: dict[str, Any],
) -> Any:
    op = command["op"]
    ns = namespaces.get(command.get("ns", ""))
    if op == "get":
        assert ns is not None
        return {"value": encode(ns.get(command["key"], tc.MISSING)), "t": time.monotonic()}
    if op == "get_many":
        assert ns is not None
        return {"values": ns.get_many(command["keys"])}
    if op == "l1":
        assert ns is not None
        l1 = cache.tiers[0]
        try:
            value, expires_at, _size = l1.lookup(ns.tier_key(command["key"]))  # type: ignore[attr-defined]
        except KeyError:
            return {"cached": False}
        return {"cached": True, "value": encode(value),
                "ttl": None if expires_at == float("inf") else expires_at - cache.clock()}
    if op in ("set", "delete", "invalidate", "invalidate_all", "flush", "set_many"):
        assert ns is not None
        started = time.monotonic()
        if op == "set":
            ns.set(command["key"], command["value"])
        elif op == "set_many":
            ns.set_many(command["items"])
        elif op == "delete":
            ns.delete(command["key"])
        elif op == "invalidate":
            ns.invalidate(command["key"])
        elif op == "invalidate_all":
            ns.invalidate_all()
        else:
            ns.flush()
        return {"start": started, "done": time.monotonic()}
    if op == "store_save":
        # Behind the cache's back: the store alone changes.
        store.bind(command["ns"]).save_many({command["key"]: command["value"]})
        return {}
    if op == "watch":
        assert ns is not None
        out({"watching": True})
        return watch(ns, command["key"], command["old"], command.get("timeout", 1.0))
    if op == "fill":
        # Write-back writes, several rounds per key (the last one must win), then "written".
        assert ns is not None
        for round_ in range(command["rounds"]):
            ns.set_many({f"k{i}": f"r{round_}-{i}" for i in range(command["n"])})
        ns.delete("k0")
        ns.set("k0", "last-k0")
        return "written"
    if op == "interleave":
        assert ns is not None
        return interleave(ns, client, config["prefix"], command["keys"], command["writes"],
                          command["flush_every"], command["seed"])
    if op == "bus":
        bus = cache._bus  # the test inspects the listener's counters
        if bus is None:
            return {"bus": False}
        return {"bus": True, "received": bus.received, "gaps": bus.gaps, "healthy": bus.healthy}
    if op == "stats":
        assert ns is not None
        return {"stats": ns.stats()}
    raise ValueError(f"unknown op {op!r}")


def main() -> int:
    config = json.loads(sys.argv[1])
    cache, namespaces = build(config)
    store = tc.SQLiteStore(config["db"])
    client = redis.Redis.from_url(config["redis_url"], socket_timeout=5)
    out({"ready": True, "pid": __import__("os").getpid()})
    try:
        for line in sys.stdin:  # bounded by the test's input
            line = line.strip()
            if not line:
                continue
            command = json.loads(line)
            if command["op"] == "exit":
                break
            try:
                result = handle(command, cache, namespaces, store, client, config)
            except Exception as exc:  # noqa: BLE001 - reported to the test, which fails with it
                out({"error": f"{type(exc).__name__}: {exc}"})
                continue
            if isinstance(result, str):  # a bare word, such as "written"
                sys.stdout.write(result + "\n")
                sys.stdout.flush()
            else:
                out(result)
    finally:
        if config.get("close", True):
            cache.close()
        store.close()
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
