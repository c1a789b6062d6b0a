"""Child processes for the cross-process benchmarks (run as ``python -m benchmarks._workers``).

Roles:

- ``single_flight URL PREFIX NAMESPACE KEY COUNTER THREADS LOAD_SECONDS``: a
  ``Cache([MemoryTier, RedisTier])`` with a ``@cache.cached`` function that
  INCRs ``COUNTER`` in Redis each time it really runs. Prints ``ready``, waits
  for a line on stdin, then calls the function from ``THREADS`` threads at
  once and prints a JSON line with the values it got.
- ``listen URL PREFIX NAMESPACE``: a ``Cache([MemoryTier, RedisTier])`` whose L1
  is watched for the cross-process invalidation latency. For each line
  ``KEY`` on stdin: read KEY (L2 -> L1), check L1 holds it, print ``ready``,
  then poll L1 (sleeping 50 µs between looks, so the bus thread is never kept
  from the GIL) until the copy is gone or replaced, and print
  ``gone <time.monotonic()>`` (``timeout`` after 2 s). ``quit`` ends it.

Every loop is bounded; the parent stops these processes by pid if they hang.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

import tiercache as tc

POLL_SLEEP = 0.00005
POLL_TIMEOUT = 2.0


def single_flight(url: str, prefix: str, namespace: str, key: str, counter: str,
                  threads: int, load_seconds: float) -> int:
    import redis

    client = redis.Redis.from_url(url)
    cache = tc.Cache(tiers=[tc.MemoryTier(), tc.RedisTier(url)], prefix=prefix)
    try:
        @cache.cached(namespace, ttl=60)
        def load(k: str) -> Any:
            client.incr(counter)
            time.sleep(load_seconds)
            return {"key": k, "loaded_by": threading.get_ident()}

        barrier = threading.Barrier(threads)
        got: list[Any] = []
        errors: list[str] = []

        def worker() -> None:
            try:
                barrier.wait(timeout=10)
                got.append(load(key))
            except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the row
                errors.append(f"{type(exc).__name__}: {exc}")

        print("ready", flush=True)
        if sys.stdin.readline().strip() != "go":
            return 2
        pool = [threading.Thread(target=worker) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join(timeout=30)
        distinct = len({json.dumps(v, sort_keys=True) for v in got})
        print(json.dumps({"results": len(got), "distinct": distinct, "errors": errors}),
              flush=True)
        return 0
    finally:
        cache.close()
        client.close()


def listen(url: str, prefix: str, namespace: str) -> int:
    cache = tc.Cache(tiers=[tc.MemoryTier(), tc.RedisTier(url)], prefix=prefix)
    try:
        ns = cache.namespace(namespace)
        lookup = cache.tiers[0].lookup  # type: ignore[attr-defined]
        for _line_no in range(100_000):  # bounded: the parent sends at most a few hundred
            line = sys.stdin.readline()
            if not line or line.strip() == "quit":
                return 0
            key = line.strip()
            old = ns.get(key)
            tier_key = ns.tier_key(key)
            try:
                held = lookup(tier_key)[0]
            except KeyError:
                print("error L1 did not keep the value read from L2", flush=True)
                continue
            print("ready", flush=True)
            deadline = time.monotonic() + POLL_TIMEOUT
            seen = None
            for _ in range(10_000_000):  # bounded; the deadline ends it sooner
                try:
                    current = lookup(tier_key)[0]
                except KeyError:
                    seen = time.monotonic()
                    break
                if current is not held and current != old:
                    seen = time.monotonic()
                    break
                if time.monotonic() > deadline:
                    break
                time.sleep(POLL_SLEEP)
            print("timeout" if seen is None else f"gone {seen!r}", flush=True)
        return 0
    finally:
        cache.close()


def main(argv: list[str]) -> int:
    role, *args = argv
    if role == "single_flight":
        url, prefix, namespace, key, counter, threads, load_seconds = args
        return single_flight(url, prefix, namespace, key, counter, int(threads),
                             float(load_seconds))
    if role == "listen":
        return listen(*args)
    print(f"unknown role {role!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
