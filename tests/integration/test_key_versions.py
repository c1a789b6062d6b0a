"""Versioned namespaces on the real Redis: every cached copy carries its key's version.

What is checked is the promise of DESIGN.md section 2: a write, delete or
invalidation gives the key a new version, so an older copy is never read
again, even one that is put back into Redis byte for byte (a writer paused
past its lease, a removal that never ran); versions only grow, also when a
version key is lost. Readers here are second caches with no L1, so every
read goes to Redis and the answer does not depend on the bus's timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

import tiercache as tc


class CountingStore(tc.MappingStore):
    """A MappingStore that counts the keys it is asked to load."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded: list[Any] = []

    def load_many(self, keys: Sequence[Any]) -> dict[Any, Any]:
        self.loaded += list(keys)
        return super().load_many(keys)


class Rig:
    """A writer (L1 + Redis) and a reader (Redis only) sharing one store and one Redis."""

    def __init__(self, redis_url: str, prefix: str, write: Any = None) -> None:
        self.store = CountingStore()
        self.writer = tc.Cache(tiers=[tc.MemoryTier(), tc.RedisTier(redis_url)],
                               prefix=prefix, store=self.store)
        self.reader = tc.Cache(tiers=[tc.RedisTier(redis_url)], prefix=prefix, store=self.store)
        kwargs = {"write": write} if write is not None else {}
        self.w = self.writer.namespace("users", invalidation=tc.Versioned(), **kwargs)
        self.r = self.reader.namespace("users", invalidation=tc.Versioned(), **kwargs)

    def close(self) -> None:
        self.writer.close()
        self.reader.close()


@pytest.fixture
def rig(redis_url: str, prefix: str) -> Iterator[Rig]:
    made = Rig(redis_url, prefix)
    yield made
    made.close()


def copy_and_version(client: Any, prefix: str, key: str) -> tuple[bytes | None, bytes | None]:
    """The raw Redis copy of a string key of the "users" namespace, and its version key's value."""
    [copy_key] = list(client.scan_iter(match=f"{prefix}:users:v*:s:{key}")) or [None]
    [version_key] = list(client.scan_iter(match=f"{prefix}:#kv:users:v*:s:{key}")) or [None]
    return (client.get(copy_key) if copy_key else None,
            client.get(version_key) if version_key else None)


def restore(client: Any, prefix: str, key: str, raw: bytes) -> None:
    """Put an old copy back, byte for byte, as a late writer would."""
    [copy_key] = list(client.scan_iter(match=f"{prefix}:#kv:users:v*:s:{key}"))
    client.set(copy_key.replace(b"#kv:", b""), raw)


def test_a_copy_carries_its_key_version(rig: Rig, redis_client: Any, prefix: str) -> None:
    rig.w.set("ada", {"name": "Ada"})
    assert rig.r.get("ada") == {"name": "Ada"}  # fills Redis through a lease
    copy, version = copy_and_version(redis_client, prefix, "ada")
    assert copy is not None and version is not None
    assert copy[:1] == b"V"
    assert copy[9:25] == version and version.isdigit() and len(version) == 16


@pytest.mark.parametrize("change", ["set", "delete", "invalidate"])
def test_a_change_makes_every_older_copy_unreachable(
    rig: Rig, redis_client: Any, prefix: str, change: str
) -> None:
    rig.w.set("ada", "old")
    assert rig.r.get("ada") == "old"
    old_copy, old_version = copy_and_version(redis_client, prefix, "ada")
    assert old_copy is not None and old_version is not None

    if change == "set":
        rig.w.set("ada", "new")
    elif change == "delete":
        rig.w.delete("ada")
    else:
        rig.w.invalidate("ada")
    _copy, new_version = copy_and_version(redis_client, prefix, "ada")
    assert new_version is not None and int(new_version) > int(old_version)

    restore(redis_client, prefix, "ada", old_copy)
    loads_before = len(rig.store.loaded)
    expected = {"set": "new", "delete": None, "invalidate": "old"}[change]
    assert rig.r.get("ada") == expected
    # The restored copy was not served: the read went to the store.
    assert len(rig.store.loaded) == loads_before + 1


def test_versions_only_grow_when_a_version_key_is_lost(
    rig: Rig, redis_client: Any, prefix: str
) -> None:
    rig.w.set("ada", 1)
    assert rig.r.get("ada") == 1
    old_copy, first = copy_and_version(redis_client, prefix, "ada")
    assert old_copy is not None and first is not None
    # Eviction (or a restart) loses the version key: the copy is unreachable.
    redis_client.unlink(*redis_client.scan_iter(match=f"{prefix}:#kv:users:*"))
    loads_before = len(rig.store.loaded)
    assert rig.r.get("ada") == 1
    assert len(rig.store.loaded) == loads_before + 1
    _copy, refilled = copy_and_version(redis_client, prefix, "ada")
    assert refilled is not None and int(refilled) > int(first)
    rig.w.set("ada", 2)
    _copy, written = copy_and_version(redis_client, prefix, "ada")
    assert written is not None and int(written) > int(refilled)
    restore(redis_client, prefix, "ada", old_copy)
    assert rig.r.get("ada") == 2


def test_one_key_changing_leaves_the_others_cached(rig: Rig) -> None:
    rig.w.set_many({"a": 1, "b": 2})
    assert rig.r.get_many(["a", "b"]) == {"a": 1, "b": 2}
    rig.w.set("a", 10)
    loads_before = list(rig.store.loaded)
    assert rig.r.get_many(["a", "b"]) == {"a": 10, "b": 2}
    assert rig.store.loaded[len(loads_before):] == ["a"]  # "b" came from Redis


def test_a_copy_without_a_version_is_a_miss(rig: Rig, redis_client: Any, prefix: str) -> None:
    """A plain copy under a versioned key (written before a swap to Versioned) is never served."""
    rig.w.set("ada", "store")
    assert rig.r.get("ada") == "store"
    copy, _version = copy_and_version(redis_client, prefix, "ada")
    assert copy is not None
    plain = b"T" + copy[1:9] + copy[25:]
    restore(redis_client, prefix, "ada", plain)
    loads_before = len(rig.store.loaded)
    assert rig.r.get("ada") == "store"
    assert len(rig.store.loaded) == loads_before + 1


def test_write_back_copies_take_a_new_version_with_their_journal_entry(
    redis_url: str, redis_client: Any, prefix: str
) -> None:
    rig = Rig(redis_url, prefix, write=tc.WriteBack(flush_interval=60))
    try:
        rig.w.set("ada", "old")
        old_copy, old_version = copy_and_version(redis_client, prefix, "ada")
        assert old_copy is not None and old_copy[9:25] == old_version
        rig.w.set("ada", "new")
        new_copy, new_version = copy_and_version(redis_client, prefix, "ada")
        assert new_copy is not None and new_version is not None
        assert new_copy[9:25] == new_version and int(new_version) > int(old_version)
        restore(redis_client, prefix, "ada", old_copy)
        assert rig.r.get("ada") == "new"  # the pending write, from the journal
        assert rig.store.loaded == []
        rig.writer.flush()
        assert rig.store.mapping["ada"] == "new"
    finally:
        rig.close()


def test_swapping_to_and_from_versioned_serves_the_store_value(
    redis_url: str, prefix: str
) -> None:
    store = tc.MappingStore()
    with tc.Cache(tiers=[tc.MemoryTier(), tc.RedisTier(redis_url)], prefix=prefix,
                  store=store) as cache:
        ns = cache.namespace("users")
        ns.set("ada", 1)
        assert ns.get("ada") == 1
        ns.configure(invalidation=tc.Versioned())
        assert ns.get("ada") == 1
        ns.set("ada", 2)
        assert ns.get("ada") == 2
        ns.configure(invalidation=tc.Purge())
        assert ns.get("ada") == 2
        ns.set("ada", 3)
        ns.configure(invalidation=tc.Versioned())
        assert ns.get("ada") == 3


def test_async_reads_check_the_version(redis_url: str, redis_client: Any, prefix: str) -> None:
    store = CountingStore()

    async def scenario() -> None:
        async with tc.AsyncCache(tiers=[tc.RedisTier(redis_url)], prefix=prefix,
                                 store=store) as cache:
            ns = cache.namespace("users", invalidation=tc.Versioned())
            await ns.set("ada", "old")
            assert await ns.get("ada") == "old"
            old_copy, _version = copy_and_version(redis_client, prefix, "ada")
            assert old_copy is not None and old_copy[:1] == b"V"
            await ns.set("ada", "new")
            restore(redis_client, prefix, "ada", old_copy)
            assert await ns.get("ada") == "new"

    asyncio.run(scenario())
