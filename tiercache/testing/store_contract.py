"""The store contract: what every Store keeps, as a pytest suite to subclass.

Subclass :class:`StoreContract` in your test module, implement
:meth:`~StoreContract.make_store`, and pytest collects the inherited tests
(``StoreContract`` itself is not collected: its name does not start with
``Test``)::

    from tiercache.testing.store_contract import StoreContract

    class TestMyStore(StoreContract):
        def make_store(self) -> Store:
            return MyStore(...)

``make_store`` takes no arguments; a store that needs a fixture (a temporary
directory, a database URL) gets it from an autouse fixture of the subclass,
which pytest runs before the ``store`` fixture that calls ``make_store``.
Each test gets a fresh store, closed afterwards. Class attributes adapt the
suite to stores that differ by design: ``isolates_namespaces`` and
``sample_values``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any, ClassVar

import pytest

from .._types import MISSING, Key
from ..stores.base import Store

__all__ = ["SAMPLE_KEYS", "SAMPLE_VALUES", "StoreContract"]

SAMPLE_VALUES: dict[Key, Any] = {
    "str": "héllo, wörld ✓",
    "empty_str": "",
    "int": 42,
    "negative_int": -7,
    "big_int": 2**63 - 1,
    "float": 1.25,
    "bytes": b"\x00\xff binary",
    "none": None,
    "bool": True,
    "dict": {"a": [1, 2, {"b": None}], "c": {"d": 1.5}, "e": {}},
    "int_keyed_dict": {1: "one", 2: "two"},
    "list": [1, "two", [3.0, None], []],
    "tuple": (1, "a", (2, b"x")),
    "set": {1, 2, 3},
    "frozenset": frozenset({"a", "b"}),
    "datetime_aware": dt.datetime(
        2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))
    ),
    "datetime_utc": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
    "datetime_naive": dt.datetime(2026, 1, 2, 3, 4, 5),
    "date": dt.date(2026, 2, 28),
    "decimal": Decimal("12345.678900"),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "nested": {"when": [dt.date(2026, 1, 1), (Decimal("1.10"), {uuid.UUID(int=7)})]},
}
"""Values of every type the default serializer supports, by name."""

SAMPLE_KEYS: list[Key] = [
    "plain",
    "",
    "ünïcödé ✓",
    "with:colons and spaces",
    0,
    -17,
    10**30,
    b"",
    b"\x00\xff",
    (),
    (1, "a", b"b"),
    ((1, "a"), (b"b", ()), "c"),
]
"""Keys of every kind, each distinct from every other."""

LOOK_ALIKE_KEYS: list[Key] = [1, "1", b"1", (1,), ("1",), ((1,),), (1, 2), ((1, 2),), "i:1"]
"""Keys that print alike but are different keys."""


def same(expected: Any, actual: Any) -> bool:
    """Return whether ``actual`` equals ``expected`` with the same types all the way down."""
    if type(expected) is not type(actual):
        return False
    if isinstance(expected, dict):
        return expected.keys() == actual.keys() and all(
            same(value, actual[key]) for key, value in expected.items()
        )
    if isinstance(expected, (list, tuple)):
        return len(expected) == len(actual) and all(map(same, expected, actual))
    if isinstance(expected, dt.datetime):
        return bool(expected == actual and expected.utcoffset() == actual.utcoffset())
    return bool(expected == actual)


class StoreContract:
    """The behaviour every :class:`~tiercache.stores.Store` keeps.

    Attributes:
        isolates_namespaces: Whether :meth:`Store.bind` gives two namespaces
            separate keys. False for stores whose ``bind`` returns the store
            itself (``MappingStore``, ``FunctionStore``, a SQL store given
            ``table=``): the suite then checks that binding shares the data.
        sample_values: Values that must round-trip; narrow it for a store
            whose serializer supports fewer types (JSON).
    """

    isolates_namespaces: ClassVar[bool] = True
    sample_values: ClassVar[dict[Key, Any]] = SAMPLE_VALUES

    def make_store(self) -> Store:
        """Return a new, empty store to test; subclasses implement it."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_store()")

    @pytest.fixture
    def store(self) -> Iterator[Store]:
        """A fresh store from :meth:`make_store`, closed after the test."""
        store = self.make_store()
        yield store
        store.close()

    def test_load_absent_key_is_missing(self, store: Store) -> None:
        """An absent key loads as MISSING and is left out of load_many."""
        assert store.load_many(["absent"]) == {}
        load = getattr(store, "load", None)
        if load is not None:
            assert load("absent") is MISSING

    def test_load_many_omits_absent_keys(self, store: Store) -> None:
        """load_many returns exactly the keys the store has."""
        store.save_many({"a": 1, "c": 3})
        loaded = store.load_many(["a", "b", "c", "d"])
        assert loaded == {"a": 1, "c": 3}, loaded

    def test_single_key_methods(self, store: Store) -> None:
        """load, save and delete (where the store has them) act on one key."""
        if not all(hasattr(store, name) for name in ("load", "save", "delete")):
            pytest.skip("store has only the batch methods")
        single: Any = store
        single.save("k", {"v": 1})
        assert single.load("k") == {"v": 1}
        assert store.load_many(["k"]) == {"k": {"v": 1}}
        single.delete("k")
        assert single.load("k") is MISSING

    def test_values_round_trip(self, store: Store) -> None:
        """Every sample value comes back equal and of the same types, nested ones included."""
        store.save_many(self.sample_values)
        loaded = store.load_many(list(self.sample_values))
        assert loaded.keys() == self.sample_values.keys()
        wrong = {
            name: (value, loaded[name])
            for name, value in self.sample_values.items()
            if not same(value, loaded[name])
        }
        assert not wrong, f"values that did not round-trip (sent, loaded): {wrong}"

    def test_none_is_a_value(self, store: Store) -> None:
        """A saved None is found, not mistaken for absence."""
        store.save_many({"n": None})
        assert store.load_many(["n"]) == {"n": None}
        load = getattr(store, "load", None)
        if load is not None:
            assert load("n") is None

    def test_keys_of_every_kind_round_trip(self, store: Store) -> None:
        """Keys of every kind are stored apart and come back as the caller's objects."""
        store.save_many({key: index for index, key in enumerate(SAMPLE_KEYS)})
        loaded = store.load_many(SAMPLE_KEYS)
        assert loaded == {key: index for index, key in enumerate(SAMPLE_KEYS)}, loaded
        changed = [key for key in SAMPLE_KEYS if not same(key, next(k for k in loaded if k == key))]
        assert not changed, f"keys returned as other objects than the caller's: {changed}"

    def test_look_alike_keys_are_distinct(self, store: Store) -> None:
        """1, "1", b"1", (1,) and friends are different keys."""
        store.save_many({key: index for index, key in enumerate(LOOK_ALIKE_KEYS)})
        loaded = store.load_many(LOOK_ALIKE_KEYS)
        expected = {key: index for index, key in enumerate(LOOK_ALIKE_KEYS)}
        assert loaded == expected, f"look-alike keys collided: {loaded}"
        store.delete_many([1])
        assert store.load_many(["1", 1]) == {"1": 1}, "deleting 1 touched '1'"

    def test_save_many_and_delete_many_act_on_the_batch(self, store: Store) -> None:
        """save_many writes every item; delete_many removes exactly the keys named."""
        store.save_many({f"k{i}": i for i in range(10)})
        store.delete_many([f"k{i}" for i in range(0, 10, 2)])
        assert store.load_many([f"k{i}" for i in range(10)]) == {
            f"k{i}": i for i in range(1, 10, 2)
        }

    def test_overwrite_replaces_the_value(self, store: Store) -> None:
        """Saving an existing key replaces its value, in a batch too."""
        store.save_many({"k": "old", "other": 1})
        store.save_many({"k": "new"})
        assert store.load_many(["k", "other"]) == {"k": "new", "other": 1}

    def test_delete_of_absent_key_is_ignored(self, store: Store) -> None:
        """Deleting keys the store lacks is not an error and changes nothing else."""
        store.save_many({"kept": 1})
        store.delete_many(["absent", ("also", "absent")])
        assert store.load_many(["kept"]) == {"kept": 1}

    def test_empty_batches_are_no_ops(self, store: Store) -> None:
        """Empty load_many, save_many and delete_many do nothing."""
        assert store.load_many([]) == {}
        store.save_many({})
        store.delete_many([])

    def test_bind_gives_namespaces_their_keys(self, store: Store) -> None:
        """bind() isolates namespaces, or shares one key space if the store does not isolate."""
        token = uuid.uuid4().hex[:8]
        # Names that collide if '-' and '.' become '_' or if case is folded.
        names = [f"n{token}-a", f"n{token}_a", f"n{token}.a", f"N{token}_A"]
        bound = [store.bind(name) for name in names]
        assert all(isinstance(each, Store) for each in bound)
        assert store.bind(names[0]).load_many(["k"]) == bound[0].load_many(["k"])
        for index, each in enumerate(bound):
            each.save_many({"k": index})
        seen = [each.load_many(["k"]) for each in bound]
        if self.isolates_namespaces:
            expected = [{"k": index} for index in range(len(names))]
            assert seen == expected, f"namespaces {names} shared keys: {seen}"
            assert store.load_many(["k"]) == {}, "a namespace wrote to the unbound store"
        else:
            last = {"k": len(names) - 1}
            assert seen == [last] * len(names), f"bind() did not share the store: {seen}"
            assert store.load_many(["k"]) == last, "bind() did not share the store"

    def test_load_many_of_a_thousand_keys(self, store: Store) -> None:
        """A batch larger than any IN-list chunk loads whole."""
        items: dict[Key, Any] = {("big", i): i for i in range(1000)}
        store.save_many(items)
        keys: list[Key] = [*items, *[("absent", i) for i in range(10)]]
        loaded = store.load_many(keys)
        assert loaded == items, f"{len(loaded)} of {len(items)} keys loaded"
        store.delete_many(list(items))
        assert store.load_many(keys) == {}, "delete_many left keys behind"

    def test_concurrent_saves_and_loads_stay_consistent(self, store: Store) -> None:
        """Eight threads writing and reading at once each see their own writes."""
        threads, rounds = 8, 20

        def work(thread: int) -> None:
            for i in range(rounds):
                store.save_many({("t", thread, i): i, "shared": thread * 1000 + i})
                got = store.load_many([("t", thread, i), "shared"])
                assert got.get(("t", thread, i)) == i, f"thread {thread} lost its write: {got}"
                assert got["shared"] % 1000 < rounds, f"torn value: {got}"

        pool = ThreadPoolExecutor(max_workers=threads)
        try:
            futures = [pool.submit(work, thread) for thread in range(threads)]
            for future in futures:
                future.result(timeout=60)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        keys: list[Key] = [("t", t, i) for t in range(threads) for i in range(rounds)]
        assert store.load_many(keys) == {key: key[2] for key in keys if isinstance(key, tuple)}
        final = store.load_many(["shared"])
        assert final["shared"] in {t * 1000 + rounds - 1 for t in range(threads)}, final

    def test_close_is_idempotent(self) -> None:
        """close() may be called twice."""
        store = self.make_store()
        store.close()
        store.close()
