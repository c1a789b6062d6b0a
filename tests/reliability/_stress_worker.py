"""One process of the race stress test: writer and reader threads over a few keys.

Started by tests/reliability/test_races.py as ``python _stress_worker.py '<json>'``.
Config keys:

    redis_url, prefix, db (SQLite file shared by every worker), namespace,
    keys (list of str), writers, readers (threads), start_at (time.time()
    at which every worker starts), duration (seconds of operations),
    max_ops (per thread), label (this process's name in the history),
    out (directory for the history and the result), peers (how many
    workers write a ``done-*`` file before anyone does its final reads),
    settle (seconds to wait after every worker is done), naive (bool),
    naive_pause (seconds a naive reader sleeps between loading and filling),
    delete_ratio, seed.

With ``naive`` the readers bypass tiercache's read path: GET from Redis,
and on a miss load the store and put the value into Redis with a plain SET
(no lease, no fence), after ``naive_pause`` (a preemption, a GC pause).
Writers are tiercache's in both modes (store first, then delete-on-write).

Every operation is recorded in a ``History`` (time.monotonic: CLOCK_MONOTONIC,
one clock for every process of the host). After its operations the worker
writes ``done-<label>``, waits (bounded) for the others, sleeps ``settle``
seconds, reads every key once more (the final reads, also in the history),
then writes ``hist-<label>.jsonl`` and ``result-<label>.json`` and prints
the result as one JSON line. Every loop is bounded in count and time.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import redis

import tiercache as tc
from tiercache.testing.checker import History

ABSENT = {"missing": True}
_ENVELOPE_HEADER = b"T" + bytes(8)  # tiercache's Redis envelope: version byte, expiry 0 (none)


def main() -> None:
    config = json.loads(sys.argv[1])
    label = config["label"]
    out = Path(config["out"])
    keys: list[str] = list(config["keys"])
    cache = tc.Cache(
        tiers=[tc.MemoryTier(maxsize=10_000), tc.RedisTier(config["redis_url"], timeout=1.0)],
        store=tc.SQLiteStore(config["db"]),
        prefix=config["prefix"],
    )
    ns = cache.namespace(config["namespace"])
    raw = redis.Redis.from_url(config["redis_url"], socket_timeout=2.0)
    serializer = tc.MsgpackSerializer()
    history = History(label)
    errors: list[str] = []
    counts = {"reads": 0, "writes": 0, "deletes": 0, "naive_fills": 0}
    count_lock = threading.Lock()

    def bump(name: str) -> None:
        with count_lock:
            counts[name] += 1

    def naive_get(key: str) -> Any:
        """Cache-aside without fencing: GET, else load, pause, plain SET."""
        rkey = ns.tier_key(key)
        blob = raw.get(rkey)
        if blob is not None and blob[:1] == b"T":
            return serializer.loads(blob[len(_ENVELOPE_HEADER):])
        value = ns.store.load_many([key]).get(key, tc.MISSING)  # type: ignore[union-attr]
        time.sleep(config["naive_pause"])
        if value is not tc.MISSING:
            raw.set(rkey, _ENVELOPE_HEADER + serializer.dumps(value))
            bump("naive_fills")
        return value

    start_at = float(config["start_at"])
    deadline = start_at + float(config["duration"])
    max_ops = int(config["max_ops"])

    def writer(n: int) -> None:
        rng = random.Random(f"{config['seed']}-{label}-w{n}")
        for i in range(max_ops):  # bounded; the deadline ends it sooner
            if time.time() >= deadline:
                return
            key = rng.choice(keys)
            try:
                if rng.random() < config["delete_ratio"]:
                    history.delete(key, lambda key=key: ns.delete(key))
                    bump("deletes")
                else:
                    value = f"{label}-w{n}-{i}"
                    history.write(key, value, lambda key=key, value=value: ns.set(key, value))
                    bump("writes")
            except Exception:  # noqa: BLE001 - reported to the test, which fails with it
                errors.append(traceback.format_exc(limit=3))

    def reader(n: int) -> None:
        rng = random.Random(f"{config['seed']}-{label}-r{n}")
        for _i in range(max_ops):  # bounded; the deadline ends it sooner
            if time.time() >= deadline:
                return
            key = rng.choice(keys)
            try:
                if config["naive"]:
                    history.read(key, lambda key=key: naive_get(key))
                else:
                    history.read(key, lambda key=key: ns.get(key, tc.MISSING))
                bump("reads")
            except Exception:  # noqa: BLE001 - reported to the test, which fails with it
                errors.append(traceback.format_exc(limit=3))

    print(json.dumps({"ready": label}), flush=True)
    time.sleep(max(0.0, min(start_at - time.time(), 30.0)))
    threads = [threading.Thread(target=writer, args=(n,)) for n in range(config["writers"])]
    threads += [threading.Thread(target=reader, args=(n,)) for n in range(config["readers"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(1.0, deadline - time.time() + 30.0))
    stuck = sum(t.is_alive() for t in threads)

    # Barrier: every worker's writes are over before anyone's final reads.
    (out / f"done-{label}").write_text("done")
    barrier_deadline = time.monotonic() + 30.0
    for _ in range(30_000):  # bounded; the deadline ends it sooner
        if len(list(out.glob("done-*"))) >= config["peers"] or time.monotonic() >= barrier_deadline:
            break
        time.sleep(0.01)
    time.sleep(config["settle"])

    final: dict[str, Any] = {}
    for key in keys:
        try:
            value = history.read(key, lambda key=key: ns.get(key, tc.MISSING))
        except Exception:  # noqa: BLE001 - reported to the test, which fails with it
            errors.append(traceback.format_exc(limit=3))
            value = "<error>"
        final[key] = ABSENT if value is tc.MISSING else value

    history.save(out / f"hist-{label}.jsonl")
    result = {
        "label": label,
        "final": final,
        "counts": counts,
        "errors": errors[:20],
        "error_count": len(errors),
        "stuck_threads": stuck,
        "stats": ns.stats(),
    }
    (out / f"result-{label}.json").write_text(json.dumps(result, default=repr))
    print(json.dumps({"done": label}), flush=True)
    cache.close()
    raw.close()


if __name__ == "__main__":
    main()
