"""MemoryTier: LRU order, entry and byte bounds, TTLs on an injected clock, thread safety."""

from __future__ import annotations

import math
import random
import sys
import threading
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tiercache as tc
from tiercache.errors import ConfigurationError
from tiercache.testing.clock import FakeClock

ADMISSIONS = ["lru", "tinylfu"]


def put(tier: tc.MemoryTier, key: str, value: Any = None, ttl: float | None = None,
        size: int = 1, now: float = 0.0) -> None:
    tier.set_many([(key, key if value is None else value, ttl, size)], now)


def keys_held(tier: tc.MemoryTier, candidates: list[str], now: float = 0.0) -> set[str]:
    """Which candidates the tier answers for (expired entries count as absent)."""
    answers = tier.get_many(candidates, now)
    return {k for k, a in zip(candidates, answers, strict=True) if a is not None}


# -- LRU -------------------------------------------------------------------------


def test_least_recently_set_entry_is_evicted_first() -> None:
    """With maxsize=3, a fourth entry evicts the oldest one."""
    tier = tc.MemoryTier(admission="lru", maxsize=3)
    for k in "abc":
        put(tier, k)
    put(tier, "d")
    assert keys_held(tier, list("abcd")) == {"b", "c", "d"}


def test_get_touches_an_entry_so_it_survives_eviction() -> None:
    """Reading an entry makes it most recently used: the next eviction takes another."""
    tier = tc.MemoryTier(admission="lru", maxsize=3)
    for k in "abc":
        put(tier, k)
    assert tier.get_many(["a"], 0.0)[0] is not None  # touch a
    put(tier, "d")
    assert tier.lookup("a")[0] == "a"
    with pytest.raises(KeyError):
        tier.lookup("b")


def test_lookup_also_touches() -> None:
    """The namespace's fast path (lookup) updates LRU order like get_many."""
    tier = tc.MemoryTier(maxsize=2)
    put(tier, "a")
    put(tier, "b")
    tier.lookup("a")
    put(tier, "c")
    assert len(tier) == 2
    assert tier.lookup("a")[0] == "a"


def test_overwriting_an_entry_refreshes_it_without_growing() -> None:
    """Setting an existing key replaces it, keeps len, and makes it most recent."""
    tier = tc.MemoryTier(maxsize=2)
    put(tier, "a", 1)
    put(tier, "b", 2)
    put(tier, "a", 3)
    assert len(tier) == 2
    put(tier, "c", 4)
    assert tier.lookup("a")[0] == 3
    assert keys_held(tier, ["a", "b", "c"]) == {"a", "c"}
    assert tier.evictions == 1


def test_maxsize_bounds_the_number_of_entries() -> None:
    """However many entries are written, len never exceeds maxsize."""
    tier = tc.MemoryTier(admission="lru", maxsize=5)
    for i in range(50):
        put(tier, f"k{i}")
        assert len(tier) <= 5
    assert len(tier) == 5
    assert keys_held(tier, [f"k{i}" for i in range(50)]) == {f"k{i}" for i in range(45, 50)}


def test_one_batch_larger_than_maxsize_keeps_the_last_entries() -> None:
    """A set_many of more entries than maxsize leaves the last maxsize of them."""
    tier = tc.MemoryTier(admission="lru", maxsize=3)
    tier.set_many([(f"k{i}", i, None, 1) for i in range(10)], 0.0)
    assert keys_held(tier, [f"k{i}" for i in range(10)]) == {"k7", "k8", "k9"}
    assert tier.evictions == 7


# -- bytes -------------------------------------------------------------------------


def test_maxbytes_bounds_the_sum_of_sizes() -> None:
    """With maxbytes, the sum of the entries' charges stays within it; the oldest go first."""
    tier = tc.MemoryTier(admission="lru", maxsize=100, maxbytes=100)
    for i in range(10):
        put(tier, f"k{i}", size=30)  # charged 32: a 2-byte key and a 30-byte value
        assert tier.currbytes is not None and tier.currbytes <= 100
    assert keys_held(tier, [f"k{i}" for i in range(10)]) == {"k7", "k8", "k9"}
    assert tier.currbytes == 96


@pytest.mark.parametrize("admission", ADMISSIONS)
def test_maxbytes_counts_the_keys(admission: str) -> None:
    """Long keys count toward maxbytes: 300 keys of 100 kB with 1-byte values do not all stay."""
    maxbytes = 1_000_000
    tier = tc.MemoryTier(maxsize=1_000, maxbytes=maxbytes, admission=admission)  # type: ignore[arg-type]
    keys = [f"{i:06d}" + "k" * 100_000 for i in range(300)]
    for key in keys:
        put(tier, key, 1, size=1)
        assert tier.currbytes is not None and tier.currbytes <= maxbytes
    assert len(tier) <= maxbytes // 100_007
    assert tier.currbytes == sum(len(k) + 1 for k in keys_held(tier, keys))


def test_maxbytes_counts_a_key_in_utf8() -> None:
    """A key is charged its UTF-8 length, not its length in characters."""
    tier = tc.MemoryTier(maxbytes=100)
    put(tier, "é" * 10, size=5)  # 20 bytes in UTF-8
    assert tier.currbytes == 25
    put(tier, "€" * 33, size=1)  # 99 bytes + 1 = 100: fits, alone
    assert tier.currbytes == 100
    put(tier, "€" * 34, size=0)  # 102 bytes: refused
    assert tier.currbytes == 100


def test_maxbytes_and_maxsize_both_apply() -> None:
    """The tighter of the two bounds wins, entry count or bytes."""
    tier = tc.MemoryTier(maxsize=2, maxbytes=1000)
    for i in range(5):
        put(tier, f"k{i}", size=1)
    assert len(tier) == 2
    assert tier.currbytes == 6  # two 2-byte keys and 1-byte values


def test_currbytes_follows_replacements_and_deletes() -> None:
    """currbytes is the exact sum of the charges held after replace and delete."""
    tier = tc.MemoryTier(maxbytes=1000)
    put(tier, "a", size=10)
    put(tier, "b", size=20)
    put(tier, "a", size=5)
    assert tier.currbytes == 1 + 5 + 1 + 20
    tier.delete_many(["b"])
    assert tier.currbytes == 1 + 5
    assert tc.MemoryTier().currbytes is None


def test_entry_bigger_than_maxbytes_is_not_stored_and_drops_older_copy() -> None:
    """A value larger than the whole tier is kept out, its older copy removed, others kept."""
    tier = tc.MemoryTier(maxbytes=100)
    put(tier, "big", "old", size=10)
    put(tier, "other", size=10)
    put(tier, "big", "new", size=98)  # 3 + 98 bytes
    with pytest.raises(KeyError):
        tier.lookup("big")
    assert tier.lookup("other")[0] == "other"
    assert tier.currbytes == 5 + 10
    assert tier.evictions == 0


def test_entry_of_exactly_maxbytes_is_stored() -> None:
    """An entry charged exactly maxbytes fits (evicting the rest)."""
    tier = tc.MemoryTier(maxbytes=100)
    put(tier, "a", size=40)
    put(tier, "b", size=99)
    assert keys_held(tier, ["a", "b"]) == {"b"}
    assert tier.currbytes == 100


# -- TTL -------------------------------------------------------------------------


def test_per_entry_ttl_expires_on_the_injected_clock() -> None:
    """An entry set with ttl=5 is a hit until now+5 (remaining reported), then a miss and gone."""
    clock = FakeClock()
    tier = tc.MemoryTier()
    put(tier, "k", "v", ttl=5, now=clock())
    put(tier, "forever", "v", ttl=None, now=clock())
    clock.advance(4)
    value, remaining = tier.get_many(["k"], clock())[0]  # type: ignore[misc]
    assert value == "v" and remaining == pytest.approx(1.0)
    assert tier.get_many(["forever"], clock())[0] == ("v", None)
    clock.advance(1)
    assert tier.get_many(["k"], clock()) == [None]
    assert len(tier) == 1  # the expired entry was dropped, not just hidden
    clock.advance(10**6)
    assert tier.get_many(["forever"], clock())[0] == ("v", None)


def test_tier_ttl_is_a_ceiling_on_every_entry() -> None:
    """MemoryTier(ttl=10) caps longer and absent TTLs at 10 and keeps shorter ones."""
    clock = FakeClock()
    tier = tc.MemoryTier(ttl=timedelta(seconds=10))
    assert tier.ttl == 10.0
    now = clock()
    tier.set_many([("none", 1, None, 1), ("long", 2, 60, 1), ("short", 3, 3, 1)], now)
    assert tier.lookup("none")[1] == now + 10
    assert tier.lookup("long")[1] == now + 10
    assert tier.lookup("short")[1] == now + 3
    clock.advance(10)
    assert tier.get_many(["none", "long", "short"], clock()) == [None, None, None]


def test_entry_without_ttl_never_expires() -> None:
    """ttl=None on an uncapped tier stores an infinite expiry."""
    tier = tc.MemoryTier()
    put(tier, "k", ttl=None, now=5.0)
    assert tier.lookup("k")[1] == math.inf


def test_expired_entry_replaced_concurrently_is_not_discarded() -> None:
    """Discarding an expired entry never removes a newer entry written for the same key."""
    clock = FakeClock()
    tier = tc.MemoryTier()
    put(tier, "k", "old", ttl=1, now=clock())
    clock.advance(2)
    put(tier, "k", "new", ttl=10, now=clock())
    assert tier.get_many(["k"], clock())[0][0] == "new"  # type: ignore[index]


# -- counters and housekeeping ----------------------------------------------------


def test_evictions_counts_only_evictions() -> None:
    """evictions counts LRU/bytes evictions, not deletes, expiries, prefix drops or clear()."""
    clock = FakeClock()
    tier = tc.MemoryTier(maxsize=2, maxbytes=50)
    put(tier, "a", ttl=1, now=clock())
    put(tier, "b", now=clock())
    put(tier, "c", now=clock())  # evicts a (entry bound)
    assert tier.evictions == 1
    put(tier, "d", size=49, now=clock())  # evicts b (entry bound), then c (byte bound)
    assert tier.evictions == 3
    tier.delete_many(["d"])
    put(tier, "e", ttl=1, now=clock())
    clock.advance(5)
    tier.get_many(["e"], clock())
    put(tier, "p:1", now=clock())
    tier.delete_prefix("p:")
    put(tier, "f", now=clock())
    tier.clear()
    assert tier.evictions == 3
    assert len(tier) == 0


def test_delete_prefix_removes_only_matching_keys() -> None:
    """delete_prefix drops keys that start with the prefix and nothing else."""
    tier = tc.MemoryTier()
    for k in ["p:a:1", "p:a:2", "p:ab:1", "p:b:1"]:
        put(tier, k)
    tier.delete_prefix("p:a:")
    assert keys_held(tier, ["p:a:1", "p:a:2", "p:ab:1", "p:b:1"]) == {"p:ab:1", "p:b:1"}


def test_delete_many_ignores_absent_keys_and_close_empties() -> None:
    """Deleting absent keys is a no-op; close() empties the tier and is idempotent."""
    tier = tc.MemoryTier()
    put(tier, "a")
    tier.delete_many(["zzz", "a", "a"])
    assert len(tier) == 0
    put(tier, "b")
    tier.close()
    tier.close()
    assert len(tier) == 0


def test_miss_is_none_never_key_error() -> None:
    """get_many answers None for absent keys, in order, and never raises KeyError."""
    tier = tc.MemoryTier()
    put(tier, "b", "B")
    assert tier.get_many(["a", "b", "c"], 0.0) == [None, ("B", None), None]
    assert tier.get_many([], 0.0) == []


def test_memory_tier_is_a_tier() -> None:
    """MemoryTier satisfies the Tier protocol and keeps Python objects (not bytes)."""
    tier = tc.MemoryTier()
    assert isinstance(tier, tc.Tier)
    assert tier.serialized is False
    obj = object()
    put(tier, "k", obj)
    assert tier.lookup("k")[0] is obj


# -- bounds that hold under every admission policy --------------------------------


@pytest.mark.parametrize("admission", ADMISSIONS)
def test_every_policy_keeps_len_within_maxsize(admission: str) -> None:
    """Under any admission policy, len never exceeds maxsize and evictions account for the rest."""
    tier = tc.MemoryTier(maxsize=10, admission=admission)  # type: ignore[arg-type]
    for i in range(200):
        put(tier, f"k{i % 37}-{i}")
        assert len(tier) <= 10
    assert len(tier) + tier.evictions == 200


@pytest.mark.parametrize("admission", ADMISSIONS)
def test_every_policy_keeps_bytes_within_maxbytes(admission: str) -> None:
    """Under any admission policy, the charges stay within maxbytes and match the entries held."""
    tier = tc.MemoryTier(maxsize=1000, maxbytes=500, admission=admission)  # type: ignore[arg-type]
    sizes = {}
    for i in range(100):
        sizes[f"k{i}"] = 1 + (i * 37) % 90
        put(tier, f"k{i}", size=sizes[f"k{i}"])
        assert tier.currbytes is not None and tier.currbytes <= 500
    held = keys_held(tier, list(sizes))
    assert tier.currbytes == sum(len(k) + sizes[k] for k in held)


@pytest.mark.parametrize("admission", ADMISSIONS)
def test_every_policy_refuses_entries_bigger_than_maxbytes(admission: str) -> None:
    """Under any admission an entry over maxbytes is not stored; its older copy is dropped."""
    tier = tc.MemoryTier(maxbytes=100, admission=admission)  # type: ignore[arg-type]
    put(tier, "big", "old", size=10)
    put(tier, "big", "new", size=98)  # 3 + 98 bytes
    assert keys_held(tier, ["big"]) == set()
    assert tier.currbytes == 0


@pytest.mark.parametrize("admission", ADMISSIONS)
def test_every_policy_expires_by_ttl(admission: str) -> None:
    """Under any admission policy entries expire on the injected clock and the ceiling applies."""
    clock = FakeClock()
    tier = tc.MemoryTier(ttl=10, admission=admission)  # type: ignore[arg-type]
    put(tier, "short", ttl=2, now=clock())
    put(tier, "capped", ttl=None, now=clock())
    clock.advance(2)
    assert keys_held(tier, ["short", "capped"], clock()) == {"capped"}
    clock.advance(8)
    assert keys_held(tier, ["short", "capped"], clock()) == set()


# -- set_one: set_many of one entry ---------------------------------------------------

_OPS = st.lists(
    st.tuples(
        st.sampled_from(["set", "get", "delete", "tick"]),
        st.integers(0, 11),  # key
        st.one_of(st.none(), st.floats(0.5, 20)),  # ttl
        st.integers(1, 60),  # size
    ),
    max_size=80,
)


@pytest.mark.parametrize("admission", ADMISSIONS)
@pytest.mark.parametrize("maxbytes", [None, 100])
@settings(max_examples=60, deadline=None)
@given(ops=_OPS)
def test_set_one_leaves_the_tier_as_set_many_of_one_entry_does(
    admission: str, maxbytes: int | None, ops: list[tuple[str, int, float | None, int]]
) -> None:
    """Twin tiers written by set_one and by set_many: the same answers, bytes and evictions."""
    clock = FakeClock()
    options: dict[str, Any] = {
        "maxsize": 6, "maxbytes": maxbytes, "ttl": 10, "admission": admission
    }
    one, many = tc.MemoryTier(**options), tc.MemoryTier(**options)
    keys = [f"k{i}" for i in range(12)]
    for op, k, ttl, size in ops:
        key = keys[k]
        if op == "set":
            one.set_one(key, (key, size), ttl, size, clock())
            many.set_many([(key, (key, size), ttl, size)], clock())
        elif op == "get":
            assert one.get_many([key], clock()) == many.get_many([key], clock())
        elif op == "delete":
            one.delete_many([key])
            many.delete_many([key])
        else:
            clock.advance(3)
        assert one.get_many(keys, clock()) == many.get_many(keys, clock())
        assert (len(one), one.currbytes, one.evictions) == (
            len(many), many.currbytes, many.evictions
        )


# -- threads ---------------------------------------------------------------------


@pytest.mark.parametrize("admission", ADMISSIONS)
def test_thread_safety_smoke(admission: str) -> None:
    """8 threads mixing set/get/delete/prefix drops: no exception, size and bytes within bounds."""
    tier = tc.MemoryTier(maxsize=64, maxbytes=2000, admission=admission)  # type: ignore[arg-type]
    errors: list[BaseException] = []
    start = threading.Barrier(8)
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # interleave the threads as much as possible

    def work(seed: int) -> None:
        rng = random.Random(seed)
        try:
            start.wait()
            for i in range(3000):
                key = f"k{rng.randrange(200)}"
                op = rng.random()
                if op < 0.4:
                    ttl = rng.choice([None, 0.001, 100.0])
                    tier.set_many([(key, i, ttl, rng.randrange(1, 60))], float(i))
                elif op < 0.8:
                    for answer in tier.get_many([key, f"k{rng.randrange(200)}"], float(i)):
                        assert answer is None or isinstance(answer, tuple)
                elif op < 0.85:
                    try:
                        tier.lookup(key)
                    except KeyError:
                        pass
                elif op < 0.98:
                    tier.delete_many([key])
                else:
                    tier.delete_prefix(f"k{rng.randrange(10)}")
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        sys.setswitchinterval(old_interval)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert len(tier) <= 64
    assert tier.currbytes is not None and tier.currbytes <= 2000
    # The structure is still usable and consistent afterwards.
    tier.clear()
    tier.set_many([(f"after{i}", i, None, 1) for i in range(100)], 0.0)
    assert len(tier) <= 64
    held = keys_held(tier, [f"after{i}" for i in range(100)])
    assert len(held) == len(tier)
    if admission == "lru":
        assert held == {f"after{i}" for i in range(36, 100)}


# -- configuration ---------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"maxsize": 0},
        {"maxsize": -1},
        {"maxsize": 1.5},
        {"maxsize": True},
        {"maxsize": "10"},
        {"maxsize": None},
        {"maxbytes": 0},
        {"maxbytes": -5},
        {"maxbytes": 10.0},
        {"maxbytes": True},
        {"ttl": 0},
        {"ttl": -1},
        {"ttl": float("nan")},
        {"ttl": float("inf")},
        {"ttl": "5"},
        {"ttl": True},
        {"ttl": timedelta(0)},
        {"ttl": timedelta(seconds=-1)},
        {"admission": "lfu"},
        {"admission": None},
    ],
    ids=repr,
)
def test_bad_constructor_arguments_raise_configuration_error(kwargs: dict[str, Any]) -> None:
    """Non-positive, non-int sizes and non-positive, non-finite TTLs raise ConfigurationError."""
    with pytest.raises(ConfigurationError):
        tc.MemoryTier(**kwargs)


def test_constructor_is_keyword_only() -> None:
    """MemoryTier(100) is refused: every option is keyword-only."""
    with pytest.raises(TypeError):
        tc.MemoryTier(100)  # type: ignore[misc]
