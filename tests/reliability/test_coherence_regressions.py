"""Coherence promises that broke in ordinary deployments (issue 12), against a real Redis.

Each test reproduces one reported case. Those whose fix has not landed yet
are strict xfails: the day the mechanism is fixed the test passes, the
strict marker turns that into a failure, and the marker must go.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import tiercache as tc

pytestmark = pytest.mark.redis

WAIT = 10.0
"""Upper bound, in seconds, of every wait on another thread or process."""


class GatedStore:
    """A dict behind ``FunctionStore`` whose first load reads, then waits for ``release``.

    The first load's value is read before it blocks, as a database read
    that began before a change would have read it.
    """

    def __init__(self, data: dict[Any, Any]) -> None:
        self.data = data
        self.loads = 0
        self.entered = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()

    def load(self, key: Any) -> Any:
        with self._lock:
            self.loads += 1
            first = self.loads == 1
        value = self.data.get(key, tc.MISSING)
        if first:
            self.entered.set()
            self.release.wait(WAIT)
        return value

    def store(self) -> tc.FunctionStore:
        return tc.FunctionStore(
            load=self.load,
            save=self.data.__setitem__,
            delete=lambda key: self.data.pop(key, None),
        )


def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()
    return thread, out


@pytest.fixture
def two_tier(redis_url: str, prefix: str) -> Callable[..., tc.Cache]:
    """Build caches of MemoryTier + the real Redis under this test's prefix."""

    def make(**options: Any) -> tc.Cache:
        return tc.Cache(tiers=[tc.MemoryTier(), tc.RedisTier(redis_url)], prefix=prefix, **options)

    return make


CHANGES: dict[str, tuple[dict[str, Any], Callable[[tc.Namespace], None], Any]] = {
    # name: (namespace options, the change, what a read after it must return)
    "delete": ({}, lambda ns: ns.delete("k"), None),
    "invalidate": ({}, lambda ns: ns.invalidate("k"), "new"),
    "invalidate_all": ({}, lambda ns: ns.invalidate_all(), "new"),
    "write_around_set": (
        {"write": tc.WriteAround()},
        lambda ns: ns.set("k", "new"),
        "new",
    ),
}


@pytest.mark.xfail(
    strict=True, reason="issue 12 item 2: a read after a change joins an older flight"
)
@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_read_that_starts_after_a_change_never_returns_the_old_value(
    two_tier: Callable[..., tc.Cache], change: str
) -> None:
    """A get begun after set/delete/invalidate returned does not join a load begun before it."""
    options, apply, expected = CHANGES[change]
    gated = GatedStore({"k": "old"})
    with two_tier(store=gated.store()) as cache:
        ns = cache.namespace("n", **options)
        first, _ = _in_thread(lambda: ns.get("k"))
        assert gated.entered.wait(WAIT), "the first load never started"
        if change != "write_around_set":
            gated.data["k"] = "new"  # the record changes; then the cache is told
        apply(ns)
        second, answer = _in_thread(lambda: ns.get("k"))
        second.join(1.0)  # a fixed cache answers at once, without the first load
        gated.release.set()
        second.join(WAIT)
        first.join(WAIT)
    assert answer == [expected]


@pytest.mark.xfail(
    strict=True, reason="issue 12 item 3: two caches of one process agree only via the bus"
)
def test_two_caches_of_one_process_see_each_others_writes_at_once(
    two_tier: Callable[..., tc.Cache],
) -> None:
    """Two Cache objects on one Redis and prefix: a read right after the other's write is fresh."""
    with two_tier() as writer, two_tier() as reader:
        w, r = writer.namespace("n"), reader.namespace("n")
        stale = []
        for i in range(20):
            w.set("k", i)
            assert r.get("k") == i  # now in the reader's L1
            w.set("k", i + 1000)
            seen = r.get("k")  # no wait for the bus
            if seen != i + 1000:
                stale.append((i + 1000, seen))
    assert stale == []


@pytest.mark.xfail(strict=True, reason="issue 12 item 4: purge invalidate_all leaves fill leases")
def test_purge_invalidate_all_fences_a_load_begun_before_it(
    two_tier: Callable[..., tc.Cache], redis_url: str, prefix: str
) -> None:
    """A load that read the store before invalidate_all cannot put its old value back in Redis.

    The loader hears no bus (``bus=False``), as a process whose bus message
    is still in flight: the fill's lease alone must fence it.
    """
    data = {"k": "old"}
    gated = GatedStore(data)
    with two_tier(store=gated.store(), bus=False) as loader, two_tier(
        store=tc.MappingStore(data)
    ) as writer:
        loading, _ = _in_thread(lambda: loader.namespace("n").get("k"))
        assert gated.entered.wait(WAIT), "the load never started"
        data["k"] = "new"
        writer.namespace("n").invalidate_all()
        gated.release.set()
        loading.join(WAIT)
    with tc.Cache(tiers=[tc.RedisTier(redis_url)], prefix=prefix, bus=False) as fresh:
        assert fresh.namespace("n").get("k", default=tc.MISSING) in ("new", tc.MISSING)


# -- after close() ----------------------------------------------------------------


CLOSED_CALLS: dict[str, Callable[[tc.Namespace], Any]] = {
    "get": lambda ns: ns.get("k"),
    "get_many": lambda ns: ns.get_many(["k"]),
    "set": lambda ns: ns.set("k", 1),
    "set_many": lambda ns: ns.set_many({"k": 1}),
    "delete": lambda ns: ns.delete("k"),
    "invalidate": lambda ns: ns.invalidate("k"),
}


@pytest.mark.xfail(strict=True, reason="issue 12 item 17: a closed cache accepts writes")
@pytest.mark.parametrize("call", sorted(CLOSED_CALLS))
@pytest.mark.parametrize("write", [tc.WriteThrough, tc.WriteBack])
def test_every_namespace_operation_after_close_raises_and_writes_nothing(
    two_tier: Callable[..., tc.Cache], call: str, write: type[tc.WritePolicy]
) -> None:
    """After cache.close() an operation raises a TiercacheError and the store is untouched."""
    data: dict[Any, Any] = {}
    cache = two_tier(store=tc.MappingStore(data))
    ns = cache.namespace("n", write=write())
    cache.close()
    with pytest.raises(tc.TiercacheError, match="closed"):
        CLOSED_CALLS[call](ns)
    assert data == {}


def test_namespace_exposes_only_its_api() -> None:
    """ns.save({...}) is not silently accepted: the namespace has no public save()."""
    with tc.Cache(tiers=[tc.MemoryTier()]) as cache:
        ns = cache.namespace("n")
        assert not hasattr(ns, "save")


@pytest.mark.xfail(strict=True, reason="issue 12 item 17: @cached creates a table per function")
def test_decorating_a_function_creates_no_table(tmp_path: Path) -> None:
    """@cache.cached on a cache with an SQL store creates nothing in the database until used."""
    path = tmp_path / "app.db"
    with tc.Cache(tiers=[tc.MemoryTier()], store=tc.SQLiteStore(str(path))) as cache:
        before = _tables(path)

        @cache.cached(ttl=60)
        def square(x: int) -> int:
            return x * x

        assert _tables(path) == before


def _tables(path: Path) -> set[str]:
    if not path.exists():
        return set()
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("select name from sqlite_master where type='table'")}


# -- fork ---------------------------------------------------------------------------


def _forked_reader(ns: tc.Namespace, ready: Any, written: Any, out: Any) -> None:
    assert ns.get("price") == 1  # the inherited L1 copy
    ready.set()
    if not written.wait(WAIT):
        out.put(("no write", None))
        return
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        if ns.get("price") == 2:
            out.put(("fresh", time.monotonic()))
            return
        time.sleep(0.005)
    out.put(("stale", ns.get("price")))


def _forked_writer(ns: tc.Namespace, ready: Any, written: Any) -> None:
    if ready.wait(WAIT):
        ns.set("price", 2)
        written.set()


@pytest.fixture
def fork_context() -> Any:
    """The multiprocessing fork context (gunicorn --preload, Celery prefork)."""
    return multiprocessing.get_context("fork")


@pytest.mark.xfail(strict=True, reason="issue 12 item 1: forked workers share a bus identity")
def test_forked_workers_see_each_others_writes(
    two_tier: Callable[..., tc.Cache], fork_context: Any
) -> None:
    """Workers forked from a parent that built the Cache invalidate each other's L1 copies."""
    with two_tier() as cache:
        ns = cache.namespace("n")
        ns.set("price", 1)
        ready, written, out = fork_context.Event(), fork_context.Event(), fork_context.Queue()
        reader = fork_context.Process(target=_forked_reader, args=(ns, ready, written, out))
        writer = fork_context.Process(target=_forked_writer, args=(ns, ready, written))
        reader.start()
        writer.start()
        try:
            verdict, _ = out.get(timeout=WAIT + 10)
        finally:
            for proc in (reader, writer):
                proc.join(WAIT)
                if proc.is_alive():
                    proc.kill()
                    proc.join(WAIT)
    assert verdict == "fresh"
