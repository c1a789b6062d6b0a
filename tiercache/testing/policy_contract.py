"""The policy contract: what every write policy x invalidation strategy x tier stack keeps.

Subclass :class:`PolicyContract` in a test module (name the subclass
``Test...``), implement :meth:`~PolicyContract.make_tiers`,
:meth:`~PolicyContract.make_write` and :meth:`~PolicyContract.make_invalidation`,
and pytest runs every test below against that combination, over a
:class:`~tiercache.MappingStore` the suite inspects and a
:class:`~tiercache.testing.scheduler.ManualScheduler`, so write-back flushes
happen only when a test calls ``flush()``::

    from tiercache import MemoryTier, Purge, WriteBack
    from tiercache.testing.policy_contract import PolicyContract

    class TestMyPolicy(PolicyContract):
        def make_tiers(self, l1_maxsize):
            return [MemoryTier(maxsize=l1_maxsize)]

        def make_write(self):
            return MyPolicy()

        def make_invalidation(self):
            return Purge()

A stack with a shared tier (Redis) should override the ``cache_prefix``
fixture so that each test writes under a prefix of its own, and remove that
prefix's keys afterwards. :meth:`~PolicyContract.make_cache` builds a cache
and returns its namespace; override it to wire anything else. After each test an invariant
check runs (see :meth:`~PolicyContract.check_invariants`). Modelled on
dogpile.cache's ``_GenericBackendTestSuite`` and Caffeine's validation
listener.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import pytest

from .._types import MISSING, Key
from ..cache import Cache
from ..invalidation import TTL, Invalidation, Purge, Versioned
from ..namespace import Namespace
from ..policies import WriteBack, WritePolicy, WriteThrough
from ..stores.mapping import MappingStore
from ..tiers.base import Tier
from .scheduler import ManualScheduler

__all__ = ["NAMESPACE", "PolicyContract", "RecordingStore"]

NAMESPACE = "contract"
"""Name of the namespace every contract test writes to."""

SMALL_L1 = 2
"""Entries of the tiny L1 that the eviction tests use."""

NEVER = 3600.0
"""A flush interval long enough that only explicit flushes run during a test."""


class RecordingStore(MappingStore):
    """A MappingStore that remembers every key it was asked about, for the invariant check."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[Key] = set()

    def load_many(self, keys: Sequence[Key]) -> dict[Key, Any]:
        self.seen.update(keys)
        return super().load_many(keys)

    def save_many(self, items: Mapping[Key, Any]) -> None:
        self.seen.update(items)
        super().save_many(items)

    def delete_many(self, keys: Sequence[Key]) -> None:
        self.seen.update(keys)
        super().delete_many(keys)


class PolicyContract:
    """Tests every write policy keeps under every invalidation strategy and tier stack.

    Attributes:
        l1_maxsize: entries of the L1 in the ordinary tests (the eviction
            tests ask :meth:`make_tiers` for :data:`SMALL_L1`).
    """

    l1_maxsize: ClassVar[int] = 1000

    # -- what a subclass provides ---------------------------------------------

    def make_tiers(self, l1_maxsize: int) -> list[Tier]:
        """Return fresh tiers, fastest first; an L1 (if any) holds ``l1_maxsize`` entries."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_tiers()")

    def make_write(self) -> WritePolicy:
        """Return the write policy under test (a new object each call)."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_write()")

    def make_invalidation(self) -> Invalidation:
        """Return the invalidation strategy under test (a new object each call)."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_invalidation()")

    # -- fixtures ---------------------------------------------------------------

    @pytest.fixture
    def cache_prefix(self) -> str:
        """The cache prefix of this test; override to clean a shared tier afterwards."""
        return "pc" + uuid.uuid4().hex[:12]

    @pytest.fixture
    def store(self) -> RecordingStore:
        """The system of record of the test's caches."""
        return RecordingStore()

    @pytest.fixture
    def scheduler(self) -> ManualScheduler:
        """Background jobs run only when a test says so."""
        return ManualScheduler()

    @pytest.fixture(autouse=True)
    def _contract_cell(
        self, cache_prefix: str, store: RecordingStore, scheduler: ManualScheduler
    ) -> Iterator[None]:
        """Hand the fixtures to :meth:`make_cache`; close every cache it made afterwards."""
        self.cell_prefix = cache_prefix
        self.cell_store = store
        self.cell_scheduler = scheduler
        self._made: list[Cache] = []
        yield
        for cache in self._made:
            self.close_cache(cache)

    cache_class: ClassVar[type[Cache]] = Cache
    """The cache under contract: ``Cache``, or ``AsyncCache`` behind a facade."""

    def close_cache(self, cache: Cache) -> None:
        """Close a cache made by :meth:`make_cache` (after the test); override to speed it up."""
        cache.close()

    def make_cache(self, *, l1_maxsize: int | None = None, **namespace_options: Any) -> Any:
        """A fresh cache over :meth:`make_tiers`, the test's store and scheduler; its namespace.

        The namespace is :data:`NAMESPACE`, with the cell's write policy and
        invalidation strategy unless ``namespace_options`` name others. Every
        cache made is closed after the test.
        """
        cache = self.cache_class(
            tiers=self.make_tiers(self.l1_maxsize if l1_maxsize is None else l1_maxsize),
            store=self.cell_store,
            prefix=self.cell_prefix,
            scheduler=self.cell_scheduler,
        )
        self._made.append(cache)
        namespace_options.setdefault("write", self.make_write())
        namespace_options.setdefault("invalidation", self.make_invalidation())
        return self.wrap_namespace(cache.namespace(NAMESPACE, **namespace_options))

    def wrap_namespace(self, ns: Any) -> Any:
        """What the tests drive for a namespace (AsyncCache's suite wraps it in a sync facade)."""
        return ns

    @pytest.fixture
    def ns(self, store: RecordingStore) -> Iterator[Namespace]:
        """The namespace under test; the invariant check runs after the test."""
        made = self.make_cache()
        yield made
        self.check_invariants(made, store)

    @pytest.fixture
    def small_ns(self, store: RecordingStore) -> Iterator[Namespace]:
        """The namespace under test over an L1 of two entries, so it evicts."""
        made = self.make_cache(l1_maxsize=SMALL_L1)
        yield made
        self.check_invariants(made, store)

    # -- helpers ----------------------------------------------------------------

    def is_write_back(self, ns: Namespace) -> bool:
        """Whether the namespace's policy defers store writes (it reports write-back stats)."""
        return "write_back" in ns.stats()

    def journal_length(self, ns: Namespace) -> int:
        """Entries pending in the namespace's write-back journal (Redis hash or local dict)."""
        if not self.is_write_back(ns):
            return 0
        pending = ns.stats()["write_back"]["pending_local"]
        for tier in ns.tiers:
            client = getattr(tier, "client", None)
            if client is not None and hasattr(tier, "journal_put"):
                pending += int(client.hlen(ns.journal_key))
                break
        return int(pending)

    def check_invariants(self, ns: Namespace, store: RecordingStore) -> None:
        """After each test: bounds, counters and an empty write-back buffer after flush().

        - the L1 holds no more entries than its ``maxsize``;
        - each layer's counters add up, and a layer is asked only about
          what the layer above it missed;
        - after ``flush()`` the write-back journal is empty, nothing was
          dead-lettered and no store write failed;
        - every key the store was asked about reads through the cache as
          the store holds it.
        """
        ns.flush()
        assert self.journal_length(ns) == 0, "write-back journal not empty after flush()"
        assert ns.dead_letters() == {}, f"dead letters: {ns.dead_letters()}"
        stats = ns.stats()
        write_back = stats.get("write_back")
        if write_back is not None:
            assert write_back["pending_local"] == 0
            assert write_back["store_errors"] == 0
            assert write_back["dead_lettered"] == 0
        tiers = list(ns.tiers)
        if tiers and hasattr(tiers[0], "maxsize") and hasattr(tiers[0], "__len__"):
            assert len(tiers[0]) <= tiers[0].maxsize  # type: ignore[arg-type]
        layers = list(stats["tiers"].values())
        if stats["store"] is not None:
            layers.append(stats["store"])
        for layer in layers:
            assert layer["requests"] == layer["hits"] + layer["misses"]
            for name in ("hits", "misses", "sets", "deletes", "errors", "undecodable"):
                assert layer[name] >= 0, (name, layer)
            assert layer["errors"] == 0, f"a layer failed during the test: {layer}"
        for upper, lower in itertools.pairwise(layers):
            assert lower["requests"] <= upper["misses"], (
                f"a layer was asked about more keys than the one above it missed: {stats}"
            )
        for key in sorted(store.seen, key=repr):
            expected = store.mapping.get(key, MISSING)
            got = ns.get(key, MISSING)
            assert got == expected, f"{key!r}: cache reads {got!r}, store holds {expected!r}"

    # -- read your writes ----------------------------------------------------------

    def test_set_then_get_reads_the_write(self, ns: Namespace, store: RecordingStore) -> None:
        """A value read right after set() is the value written; the store has it after flush()."""
        ns.set("a", {"v": 1})
        ns.set(7, [1, 2])
        ns.set(("t", 1), None)
        assert ns.get("a") == {"v": 1}
        assert ns.get(7) == [1, 2]
        assert ns.get(("t", 1), MISSING) is None
        ns.flush()
        assert store.mapping == {"a": {"v": 1}, 7: [1, 2], ("t", 1): None}

    def test_overwrite_reads_the_last_write(self, ns: Namespace, store: RecordingStore) -> None:
        """Several writes to one key: reads and (after flush) the store hold the last."""
        for i in range(5):
            ns.set("k", i)
            assert ns.get("k") == i
        ns.flush()
        assert store.mapping["k"] == 4

    def test_write_after_read_replaces_the_cached_copy(
        self, ns: Namespace, store: RecordingStore
    ) -> None:
        """A key read (and cached) from the store, then written, reads as the write."""
        store.mapping["k"] = "from store"
        assert ns.get("k") == "from store"
        assert ns.get("k") == "from store"  # now served by a tier, if any
        ns.set("k", "written")
        assert ns.get("k") == "written"
        ns.flush()
        assert store.mapping["k"] == "written"

    def test_read_your_writes_after_l1_eviction(
        self, small_ns: Namespace, store: RecordingStore
    ) -> None:
        """With an L1 of two entries, every one of 20 writes still reads back before flush()."""
        for i in range(20):
            small_ns.set(f"k{i}", i)
        for i in range(20):
            assert small_ns.get(f"k{i}") == i, f"k{i} lost before flush"
        assert small_ns.get_many([f"k{i}" for i in range(20)]) == {f"k{i}": i for i in range(20)}
        small_ns.flush()
        assert {f"k{i}": i for i in range(20)}.items() <= store.mapping.items()

    def test_read_through_loads_the_store(self, ns: Namespace, store: RecordingStore) -> None:
        """A key only the store has is read from it; an absent key gives the default."""
        store.mapping["s"] = "stored"
        assert ns.get("s") == "stored"
        assert ns.get("s") == "stored"
        assert ns.get("absent") is None
        assert ns.get("absent", MISSING) is MISSING
        assert ns.get("absent", default=42) == 42

    # -- delete and invalidate ---------------------------------------------------

    def test_delete_hides_the_key_and_removes_it_from_the_store(
        self, ns: Namespace, store: RecordingStore
    ) -> None:
        """After delete() get returns the default; after flush() the store lacks the key."""
        ns.set("d", "value")
        ns.flush()
        assert ns.get("d") == "value"
        ns.delete("d")
        assert ns.get("d", MISSING) is MISSING
        assert ns.get("d") is None
        ns.flush()
        assert "d" not in store.mapping
        assert ns.get("d", MISSING) is MISSING

    def test_delete_of_a_pending_write(self, ns: Namespace, store: RecordingStore) -> None:
        """A key written and deleted before any flush reads absent, and never reaches the store."""
        ns.set("p", "pending")
        ns.delete("p")
        assert ns.get("p", MISSING) is MISSING
        ns.flush()
        assert "p" not in store.mapping
        assert ns.get("p", MISSING) is MISSING

    def test_delete_of_a_store_only_key(self, ns: Namespace, store: RecordingStore) -> None:
        """A key only the store had, once deleted, reads absent and leaves the store."""
        store.mapping["only"] = 1
        assert ns.get("only") == 1
        ns.delete("only")
        assert ns.get("only", MISSING) is MISSING
        ns.flush()
        assert "only" not in store.mapping

    def test_set_after_delete_reads_the_new_value(
        self, ns: Namespace, store: RecordingStore
    ) -> None:
        """delete then set of one key, both before a flush: the set wins everywhere."""
        ns.set("r", 1)
        ns.flush()
        ns.delete("r")
        ns.set("r", 2)
        assert ns.get("r") == 2
        ns.flush()
        assert store.mapping["r"] == 2

    def test_invalidate_keeps_the_store(self, ns: Namespace, store: RecordingStore) -> None:
        """invalidate() drops cached copies only: the store keeps the value and reads return it."""
        ns.set("i", "kept")
        ns.flush()
        ns.invalidate("i")
        assert store.mapping["i"] == "kept"
        assert ns.get("i") == "kept"

    def test_invalidate_loses_no_pending_write(
        self, ns: Namespace, store: RecordingStore
    ) -> None:
        """invalidate() of a key written but not yet flushed: reads and the store still get it."""
        ns.set("i", "pending")
        ns.invalidate("i")
        assert ns.get("i") == "pending"
        ns.flush()
        assert store.mapping["i"] == "pending"

    def test_invalidate_rereads_a_changed_store(
        self, ns: Namespace, store: RecordingStore
    ) -> None:
        """A cached key changed behind the cache's back reads the store's value after
        invalidate()."""
        ns.set("c", "old")
        ns.flush()
        assert ns.get("c") == "old"
        store.mapping["c"] = "changed"
        ns.invalidate("c")
        assert ns.get("c") == "changed"

    def test_invalidate_all_hides_every_cached_key(
        self, ns: Namespace, store: RecordingStore
    ) -> None:
        """After invalidate_all() no copy cached before it is read: the store answers every key."""
        ns.set_many({f"k{i}": i for i in range(30)})
        ns.set(("tuple", 1), "t")
        ns.flush()
        assert ns.get_many([f"k{i}" for i in range(30)]) == {f"k{i}": i for i in range(30)}
        assert ns.get(("tuple", 1)) == "t"
        for i in range(30):
            store.mapping[f"k{i}"] = i + 100
        store.mapping[("tuple", 1)] = "changed"
        ns.invalidate_all()
        for i in range(30):
            assert ns.get(f"k{i}") == i + 100, (
                f"k{i} served from a copy cached before invalidate_all"
            )
        assert ns.get(("tuple", 1)) == "changed"
        assert ns.get_many([f"k{i}" for i in range(30)]) == {f"k{i}": i + 100 for i in range(30)}

    def test_invalidate_all_loses_no_pending_write(
        self, ns: Namespace, store: RecordingStore
    ) -> None:
        """invalidate_all() with writes not yet flushed: reads and (after flush) the store keep
        them."""
        ns.set_many({f"w{i}": i for i in range(10)})
        ns.invalidate_all()
        assert ns.get_many([f"w{i}" for i in range(10)]) == {f"w{i}": i for i in range(10)}
        ns.flush()
        assert {f"w{i}": i for i in range(10)}.items() <= store.mapping.items()

    def test_writes_after_invalidate_all_are_read(
        self, ns: Namespace, store: RecordingStore
    ) -> None:
        """A write after invalidate_all() is read back, and invalidate_all twice is harmless."""
        ns.set("x", 1)
        ns.invalidate_all()
        ns.invalidate_all()
        ns.set("x", 2)
        assert ns.get("x") == 2
        ns.flush()
        assert store.mapping["x"] == 2

    # -- batches --------------------------------------------------------------

    def test_set_many_get_many_coherence(self, ns: Namespace, store: RecordingStore) -> None:
        """get_many after set_many returns exactly the keys found, mixing tiers and the store."""
        ns.set_many({f"m{i}": {"i": i} for i in range(10)})
        store.mapping["only_store"] = "s"
        ns.set("gone", 0)
        ns.delete("gone")
        keys = [*(f"m{i}" for i in range(10)), "only_store", "gone", "never"]
        expected = {**{f"m{i}": {"i": i} for i in range(10)}, "only_store": "s"}
        assert ns.get_many(keys) == expected
        assert ns.get_many(keys) == expected  # again, now from the tiers
        for i in range(10):
            assert ns.get(f"m{i}") == {"i": i}
        ns.set_many({"m0": "new", "m1": None})
        got = ns.get_many(["m0", "m1", "m2"])
        assert got == {"m0": "new", "m1": None, "m2": {"i": 2}}
        ns.flush()
        assert store.mapping["m0"] == "new" and store.mapping["m1"] is None
        assert "gone" not in store.mapping

    def test_get_many_with_a_small_l1(self, small_ns: Namespace, store: RecordingStore) -> None:
        """set_many/get_many over an evicting L1 agree with single gets, before and after flush."""
        items: dict[Key, Any] = {("b", i): i * i for i in range(12)}
        small_ns.set_many(items)
        assert small_ns.get_many(list(items)) == items
        small_ns.flush()
        assert small_ns.get_many(list(items)) == items
        assert all(small_ns.get(k) == v for k, v in items.items())

    # -- write-back buffer ------------------------------------------------------

    def test_flush_empties_the_write_back_buffer(
        self, ns: Namespace, store: RecordingStore
    ) -> None:
        """After flush() the journal is empty and the store holds every write, coalesced."""
        for round_ in range(3):
            ns.set_many({f"f{i}": (round_, i) for i in range(25)})
        ns.delete("f0")
        if self.is_write_back(ns):
            assert self.journal_length(ns) == 25, "pending writes of one key did not coalesce"
        ns.flush()
        assert self.journal_length(ns) == 0
        if self.is_write_back(ns):
            assert ns.stats()["write_back"]["pending_local"] == 0
        assert "f0" not in store.mapping
        assert all(store.mapping[f"f{i}"] == (2, i) for i in range(1, 25))
        ns.flush()  # a second flush has nothing to do and changes nothing
        assert all(store.mapping[f"f{i}"] == (2, i) for i in range(1, 25))

    def test_background_job_flushes(
        self, ns: Namespace, store: RecordingStore, scheduler: ManualScheduler
    ) -> None:
        """The scheduler's job, when run, flushes like flush() does."""
        ns.set("bg", 1)
        scheduler.run_pending()
        assert store.mapping.get("bg") == 1
        assert self.journal_length(ns) == 0

    def test_close_drains_the_buffer(self, store: RecordingStore) -> None:
        """Closing the namespace writes what it held back."""
        made = self.make_cache()
        made.set_many({"c1": 1, "c2": 2})
        made.delete("c1")
        made.close()
        assert store.mapping.get("c2") == 2 and "c1" not in store.mapping

    # -- configure ----------------------------------------------------------------

    def test_configure_swap_from_write_back_loses_nothing(self, store: RecordingStore) -> None:
        """WriteBack with pending writes swapped for this cell's policy: nothing lost, no stale
        read."""
        ns = self.make_cache(write=WriteBack(flush_interval=NEVER))
        store.mapping["k"] = "old"
        assert ns.get("k") == "old"  # cached everywhere
        ns.set("k", "new")
        ns.set_many({f"p{i}": i for i in range(10)})
        ns.delete("p0")
        target = self.make_write()
        if isinstance(target, WriteBack):
            target = WriteThrough()
        stale: list[Any] = []
        stop = threading.Event()

        def reader() -> None:
            for _ in range(100_000):  # bounded; stop ends it sooner
                if stop.is_set():
                    return
                value = ns.get("k")
                if value != "new":
                    stale.append(value)

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        try:
            ns.configure(write=target)
        finally:
            time.sleep(0.01)
            stop.set()
            thread.join(10)
        assert not stale, f"reads during the swap returned {stale[:5]}"
        assert store.mapping["k"] == "new", "a pending write was lost by the swap"
        assert {f"p{i}": i for i in range(1, 10)}.items() <= store.mapping.items()
        assert "p0" not in store.mapping
        assert ns.get("k") == "new"
        ns.set("k", "newer")
        assert ns.get("k") == "newer"
        ns.flush()
        assert store.mapping["k"] == "newer"
        self.check_invariants(ns, store)

    def test_configure_swap_to_write_back_and_back(
        self, ns: Namespace, store: RecordingStore
    ) -> None:
        """This cell's policy -> WriteBack -> this cell's policy: reads follow every write."""
        ns.set("k", 1)
        ns.configure(write=WriteBack(flush_interval=NEVER))
        assert ns.get("k") == 1
        ns.set("k", 2)
        assert ns.get("k") == 2
        ns.configure(write=self.make_write())
        assert store.mapping["k"] == 2
        assert ns.get("k") == 2
        ns.set("k", 3)
        assert ns.get("k") == 3

    def test_configure_invalidation_round_trip_serves_no_stale_copy(
        self, ns: Namespace, store: RecordingStore
    ) -> None:
        """Strategy -> another -> back, writing in between: every read is the last write."""
        original = self.make_invalidation()
        other: Invalidation = Versioned() if not original.versioned else Purge()
        ns.set("k", "v1")
        ns.flush()
        assert ns.get("k") == "v1"  # cached under the original strategy's keys
        ns.configure(invalidation=other)
        assert ns.get("k") == "v1"
        ns.set("k", "v2")
        ns.flush()
        assert ns.get("k") == "v2"
        ns.configure(invalidation=original)
        assert ns.get("k") == "v2", "a copy cached before the first swap was served again"
        ns.configure(invalidation=TTL(30))
        assert ns.get("k") == "v2"
