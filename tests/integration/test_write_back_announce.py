"""Write-back with a Redis journal announces each set in the journal's own script.

The journal entry, the Redis copy and the bus entry that tells other
processes to drop their L1 copies are one Lua script: a set costs one
round trip, and a writer killed right after its journal write cannot leave
another process's L1 unannounced. Checked on the real Redis, with a second
Cache (its own bus, its own L1) as the other process's view.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest

import tiercache as tc
from tiercache._engine.common import NOTHING
from tiercache.testing.scheduler import ManualScheduler

pytestmark = pytest.mark.redis


class Commands:
    """Counts the commands a RedisTier's client sends (scripts arrive as EVALSHA)."""

    def __init__(self, tier: tc.RedisTier) -> None:
        self.sent: list[str] = []
        execute = tier.client.execute_command

        def counting(*args: Any, **options: Any) -> Any:
            self.sent.append(str(args[0]).upper())
            return execute(*args, **options)

        tier.client.execute_command = counting


def make(redis_url: str, prefix: str, **options: Any) -> tc.Cache:
    return tc.Cache(tiers=[tc.MemoryTier(), tc.RedisTier(redis_url)], prefix=prefix,
                    scheduler=ManualScheduler(), **options)


@pytest.fixture
def pair(redis_url: str, prefix: str) -> Iterator[tuple[tc.Cache, tc.Cache]]:
    """A writer and a reader: two caches on one Redis, each with its own bus and L1."""
    writer, reader = make(redis_url, prefix), make(redis_url, prefix)
    yield writer, reader
    writer.close()
    reader.close()


def newest_entry(client: Any, prefix: str) -> tuple[bytes, list[Any]]:
    [(entry_id, fields)] = client.xrevrange(f"{prefix}:#bus", count=1)
    return entry_id, msgpack.unpackb(fields[b"m"], raw=False)


def announcements(client: Any, prefix: str, after: bytes) -> list[list[Any]]:
    """The bus's "keys" entries after entry ``after`` (heartbeats come and go meanwhile)."""
    entries = client.xrange(f"{prefix}:#bus", min=f"({after.decode()}")
    messages = [msgpack.unpackb(fields[b"m"], raw=False) for _id, fields in entries]
    return [m for m in messages if m[2] == "keys"]


def wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    for _ in range(10_000):  # bounded; the deadline ends it sooner
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return False


@pytest.mark.parametrize("invalidation", [tc.Purge(), tc.Versioned()], ids=["purge", "versioned"])
def test_a_set_is_one_command_that_also_announces_it(
    pair: tuple[tc.Cache, tc.Cache], redis_client: Any, prefix: str, invalidation: Any
) -> None:
    """One EVALSHA: the journal entry, the copy, and the bus entry naming the key."""
    writer, reader = pair
    ns = writer.namespace("orders", write=tc.WriteBack(flush_interval=3600),
                          invalidation=invalidation)
    ns.set("warmup", 0)  # the scripts are loaded, the bus started
    commands = Commands(writer.tiers[1])  # type: ignore[arg-type]
    bus = writer._bus
    assert bus is not None
    published = bus.published
    last_id, _ = newest_entry(redis_client, prefix)
    ns.set("k", {"v": 1})
    assert commands.sent == ["EVALSHA"]
    assert announcements(redis_client, prefix, after=last_id) == [
        [bus.origin, "orders", "keys", [ns.tier_key("k")]]
    ]
    assert bus.published == published + 1
    assert redis_client.hget(ns.journal_key, "s:k") is not None  # journaled, not yet stored
    other = reader.namespace("orders", write=tc.WriteBack(flush_interval=3600),
                             invalidation=invalidation)
    assert other.get("k") == {"v": 1}  # the copy the same script wrote


def test_the_other_cache_drops_its_copy_without_a_separate_publish(
    pair: tuple[tc.Cache, tc.Cache], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the bus's own publish broken, the reader still hears of the set: the script told it."""
    writer, reader = pair
    wns = writer.namespace("orders", write=tc.WriteBack(flush_interval=3600),
                           invalidation=tc.Purge())
    rns = reader.namespace("orders", write=tc.WriteBack(flush_interval=3600),
                           invalidation=tc.Purge())
    heard = reader._bus.received  # type: ignore[union-attr]
    wns.set("k", "old")
    # The reader hears of that first set too: prime its L1 only after, or the late
    # announcement would drop the copy this test means to watch.
    assert wait_for(lambda: reader._bus.received > heard)  # type: ignore[union-attr]
    assert rns.get("k") == "old"
    assert rns.engine.peek("k") == "old"  # the reader's L1 holds it

    def no_publish(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a write-back set with a Redis journal published on its own")

    monkeypatch.setattr(writer._bus, "publish", no_publish)
    wns.set("k", "new")
    assert wait_for(lambda: rns.engine.peek("k") is NOTHING)
    assert rns.get("k") == "new"
    assert wns.bus_errors == 0


def test_a_refused_journal_write_announces_once_after_the_flush(
    redis_url: str, redis_client: Any, prefix: str
) -> None:
    """Journal full: the script refuses (and adds no bus entry); after the flush it adds one."""
    store = tc.MappingStore()
    cache = tc.Cache(tiers=[tc.MemoryTier(), tc.RedisTier(redis_url)], store=store,
                     prefix=prefix, scheduler=ManualScheduler())
    try:
        ns = cache.namespace("orders", write=tc.WriteBack(flush_interval=3600, max_pending=1),
                             invalidation=tc.Purge())
        ns.set("a", 1)
        last_id, _ = newest_entry(redis_client, prefix)
        ns.set("b", 2)  # the journal holds a: refused, a flushed, then b written
        assert [m[3] for m in announcements(redis_client, prefix, after=last_id)] == [
            [ns.tier_key("b")]
        ]
        assert store.mapping == {"a": 1}
        assert ns.get("b") == 2
    finally:
        cache.close()
