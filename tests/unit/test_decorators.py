"""@cache.cached: call keys, invalidate/refresh, negative caching, soft expiry, jitter, async."""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tiercache as tc
from tiercache.testing.clock import FakeClock

ROOT = Path(__file__).resolve().parents[2]

WAIT = 5.0
"""Seconds any background effect may take before a test gives up on it."""


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock for L1-only caches."""
    return FakeClock()


@pytest.fixture
def cache(clock: FakeClock) -> Iterator[tc.Cache]:
    """An L1-only cache on the fake clock."""
    c = tc.Cache(tiers=[tc.MemoryTier()], clock=clock)
    yield c
    c.close()


@pytest.fixture
def redis_cache(redis_url: str, prefix: str) -> Iterator[tc.Cache]:
    """L1 + the real Redis, under a prefix of the test's own."""
    c = tc.Cache(tiers=[tc.MemoryTier(), tc.RedisTier(redis_url, timeout=1.0)], prefix=prefix)
    yield c
    c.close()


def wait_until(condition: Any, timeout: float = WAIT) -> bool:
    """Poll ``condition`` every 5 ms for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return bool(condition())


# -- keys ---------------------------------------------------------------------


def test_positional_keyword_and_default_arguments_are_one_key(cache: tc.Cache) -> None:
    """f(1), f(a=1), f(1, 2) and f(b=2, a=1) with b=2 the default are one cached call."""
    calls: list[tuple[int, int]] = []

    @cache.cached()
    def f(a: int, b: int = 2) -> int:
        calls.append((a, b))
        return a + b

    assert [f(1), f(a=1), f(b=2, a=1), f(1, 2), f(1, b=2)] == [3] * 5
    assert calls == [(1, 2)]
    assert f.cache_key(1) == f.cache_key(b=2, a=1) == f.cache_key(a=1)
    assert f(1, 3) == 4
    assert calls == [(1, 2), (1, 3)]


def test_keyword_order_does_not_matter(cache: tc.Cache) -> None:
    """Keyword arguments given in any order make the same key."""
    calls: list[Any] = []

    @cache.cached()
    def f(a: int, b: int, c: int) -> int:
        calls.append((a, b, c))
        return a * 100 + b * 10 + c

    assert f(a=1, b=2, c=3) == f(c=3, b=2, a=1) == f(b=2, a=1, c=3) == f(1, c=3, b=2) == 123
    assert len(calls) == 1


def test_var_positional_and_var_keyword_functions(cache: tc.Cache) -> None:
    """*args and **kwargs are part of the key; **kwargs order does not matter."""
    calls: list[Any] = []

    @cache.cached()
    def f(first: int, *args: int, **kwargs: int) -> Any:
        calls.append((first, args, kwargs))
        return [first, list(args), sorted(kwargs.items())]

    assert f(1, 2, 3, x=4, y=5) == f(1, 2, 3, y=5, x=4)
    assert len(calls) == 1
    f(1, 2)
    f(1, 2, 3)
    f(1, (2, 3))
    f(1, 2, 3, x=4)
    f(1, 2, 3, x=4, y=6)
    assert len(calls) == 6, "each distinct call is a distinct key"
    f(1, 2, 3, x=4)
    assert len(calls) == 6


def test_self_is_left_out_for_methods(cache: tc.Cache) -> None:
    """Two instances of a class share a method's cached results."""
    calls: list[int] = []

    class Service:
        def __init__(self, tag: str) -> None:
            self.tag = tag

        @cache.cached()
        def lookup(self, user_id: int) -> str:
            calls.append(user_id)
            return f"user-{user_id}"

    first, second = Service("a"), Service("b")
    assert first.lookup(7) == second.lookup(7) == "user-7"
    assert first.lookup(user_id=7) == "user-7"
    assert calls == [7]
    assert Service.lookup.cache_key(first, 7) == Service.lookup.cache_key(second, 7)


def test_cls_is_left_out_for_classmethods(cache: tc.Cache) -> None:
    """A classmethod's results are shared by the class and its subclasses."""
    calls: list[int] = []

    class Base:
        @classmethod
        @cache.cached()
        def load(cls, n: int) -> int:
            calls.append(n)
            return n * 2

    class Child(Base):
        pass

    assert Base.load(4) == Child.load(4) == Base().load(n=4) == 8
    assert calls == [4]


def test_method_invalidate_through_the_instance(cache: tc.Cache) -> None:
    """obj.method.invalidate(x) drops the cached obj.method(x), as self is not part of the key."""
    calls: list[int] = []

    class Service:
        @cache.cached()
        def lookup(self, user_id: int) -> int:
            calls.append(user_id)
            return user_id

    service = Service()
    service.lookup(1)
    service.lookup.invalidate(1)
    service.lookup(1)
    assert calls == [1, 1]


def test_custom_key_callable(cache: tc.Cache) -> None:
    """key= receives the call's arguments and decides the key alone."""
    calls: list[Any] = []

    @cache.cached(key=lambda user, verbose=False: ("user", user["id"]))
    def render(user: dict[str, Any], verbose: bool = False) -> str:
        calls.append(user["id"])
        return f"{user['id']}:{user['name']}"

    assert render({"id": 1, "name": "Ada"}) == "1:Ada"
    assert render({"id": 1, "name": "changed"}, verbose=True) == "1:Ada"
    assert render.cache_key({"id": 1}) == ("user", 1)
    assert calls == [1]
    render.invalidate({"id": 1})
    assert render({"id": 1, "name": "Grace"}) == "1:Grace"
    assert calls == [1, 1]


def test_dict_argument_works_and_ignores_insertion_order(cache: tc.Cache) -> None:
    """An unhashable dict argument is keyed by content, whatever its insertion order."""
    calls: list[Any] = []

    @cache.cached()
    def f(filters: dict[str, Any], page: int = 0) -> int:
        calls.append(filters)
        return len(filters)

    assert f({"a": 1, "b": [1, 2], "c": {"x": 1, "y": 2}}) == 3
    assert f({"c": {"y": 2, "x": 1}, "b": [1, 2], "a": 1}) == 3
    assert len(calls) == 1
    f({"a": 1, "b": [2, 1], "c": {"x": 1, "y": 2}})
    assert len(calls) == 2, "list order is significant"


def test_unserializable_argument_raises_invalid_key_with_a_hint(cache: tc.Cache) -> None:
    """An object() argument has no stable key: InvalidKeyError saying to pass key=."""
    calls: list[Any] = []

    @cache.cached()
    def f(x: Any) -> int:
        calls.append(x)
        return 1

    with pytest.raises(tc.InvalidKeyError, match="key="):
        f(object())
    with pytest.raises(tc.InvalidKeyError, match="key="):
        f([1, object()])
    assert calls == []
    assert issubclass(tc.InvalidKeyError, tc.TiercacheError)


def test_equal_looking_arguments_of_different_types_are_different_calls(cache: tc.Cache) -> None:
    """1, "1", True and 1.0 are four different calls."""
    calls: list[Any] = []

    @cache.cached()
    def f(x: Any) -> str:
        calls.append(x)
        return type(x).__name__

    assert [f(1), f("1"), f(True), f(1.0)] == ["int", "str", "bool", "float"]
    assert [f(1), f("1"), f(True), f(1.0)] == ["int", "str", "bool", "float"]
    assert len(calls) == 4
    keys = {repr(f.cache_key(v)) for v in (1, "1", True, 1.0)}
    assert len(keys) == 4


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"a": 1}, ("d", (("a", 1),))),
        ([1, 2], ("l", (1, 2))),
        ({1, 2}, ("s", (1, 2))),
        ([1, 2], (1, 2)),
    ],
    ids=["dict-vs-tuple", "list-vs-tuple", "set-vs-tuple", "list-vs-plain-tuple"],
)
def test_different_container_arguments_are_different_calls(
    cache: tc.Cache, a: Any, b: Any
) -> None:
    """Arguments that are not equal never share a key (no collision between containers)."""
    calls: list[Any] = []

    @cache.cached()
    def f(x: Any) -> str:
        calls.append(x)
        return repr(x)

    assert f(a) == repr(a)
    assert f(b) == repr(b), f"f({b!r}) was served f({a!r})'s result"
    assert f.cache_key(a) != f.cache_key(b)


KEY_CASES: list[tuple[Any, ...]] = [
    (1,), (-(2**70),), ("x",), ("ünïcode",), (1.5,), (0.1,), (None,),
    ({"b": 1, "a": [1, 2], "c": {"z": None, "y": 1.25}},),
    ([1, "a", None, [2.5]],), ((1, "a", (None,)),), (b"raw",),
    (dt.datetime(2024, 1, 2, 3, 4, 5, 6),),
    (dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2))),),
    (dt.date(2024, 1, 2),),
    (frozenset({"alpha", "beta", "gamma", "delta"}),), ({"x", "y", "z", "w"},),
]
"""Arguments whose keys must not depend on the process: hash seed, addresses, insertion order."""


def computed_keys() -> list[str]:
    """repr of the keys (and one tier key) of every case, from a fresh cache in this process."""
    with tc.Cache(tiers=[tc.MemoryTier()]) as c:

        @c.cached(namespace="one")
        def one(x: Any) -> Any:
            return x

        @c.cached(namespace="two")
        def two(a: Any, b: Any = "default", *rest: Any, **options: Any) -> Any:
            return a

        keys: list[str] = []
        for args in KEY_CASES:
            keys.append(repr(one.cache_key(*args)))
            keys.append(repr(two.cache_key(*args)))
            keys.append(repr(two.cache_key(*args, b=args[0], z=1, y=2)))
            keys.append(repr(one.namespace.tier_key(one.cache_key(*args))))
        return keys


def _keys_in_subprocess(hash_seed: str) -> list[str]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    program = "from test_decorators import computed_keys; print('\\n'.join(computed_keys()))"
    done = subprocess.run(
        [sys.executable, "-c", program], check=False,
        capture_output=True, text=True, timeout=60, env=env, cwd=Path(__file__).parent,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_keys_are_stable_across_processes_and_restarts() -> None:
    """cache_key of ints, strs, floats, None, dicts, lists, tuples, sets, datetimes is the same
    everywhere."""
    local = computed_keys()
    assert len(local) == 4 * len(KEY_CASES)
    assert _keys_in_subprocess("1") == local
    assert _keys_in_subprocess("12345") == local, "keys changed with the hash seed (a restart)"
    assert not any("0x" in k for k in local), "a key holds an address"


# -- invalidate and refresh ------------------------------------------------------


def test_invalidate_drops_just_that_call_in_l1_and_redis(
    redis_cache: tc.Cache, redis_client: Any
) -> None:
    """f.invalidate(1) removes f(1) from L1 and the real Redis; f(2) stays cached."""
    calls: list[int] = []

    @redis_cache.cached(namespace="inv")
    def f(x: int) -> int:
        calls.append(x)
        return x * 10

    assert (f(1), f(2)) == (10, 20)
    ns = f.namespace
    l1 = redis_cache.tiers[0]
    k1, k2 = ns.tier_key(f.cache_key(1)), ns.tier_key(f.cache_key(2))
    assert redis_client.exists(k1) and redis_client.exists(k2)
    f.invalidate(1)
    with pytest.raises(KeyError):
        l1.lookup(k1)
    assert l1.lookup(k2)[0] == 20
    assert not redis_client.exists(k1)
    assert redis_client.exists(k2)
    assert (f(1), f(2)) == (10, 20)
    assert calls == [1, 2, 1]


def test_refresh_recomputes_and_caches(cache: tc.Cache) -> None:
    """f.refresh(x) calls the function now, returns and caches the new result."""
    source = {"x": 1}

    @cache.cached()
    def f(key: str) -> int:
        return source[key]

    assert f("x") == 1
    source["x"] = 2
    assert f("x") == 1
    assert f.refresh("x") == 2
    source["x"] = 3
    assert f("x") == 2
    assert f(key="x") == 2


# -- negative caching, TTL -----------------------------------------------------------


def test_negative_ttl_caches_the_absence(cache: tc.Cache, clock: FakeClock) -> None:
    """A function returning MISSING with negative_ttl= is called once; the call returns MISSING."""
    calls: list[int] = []

    @cache.cached(negative_ttl=30)
    def find(user_id: int) -> Any:
        calls.append(user_id)
        return tc.MISSING

    assert find(1) is tc.MISSING
    assert find(1) is tc.MISSING
    assert calls == [1]
    clock.advance(31)
    assert find(1) is tc.MISSING
    assert calls == [1, 1]


def test_none_is_a_cached_value(cache: tc.Cache) -> None:
    """A function returning None has that None cached (None is a value, not a miss)."""
    calls: list[int] = []

    @cache.cached()
    def f(x: int) -> None:
        calls.append(x)

    assert f(1) is None and f(1) is None
    assert calls == [1]


def test_ttl_is_honoured_on_the_fake_clock(cache: tc.Cache, clock: FakeClock) -> None:
    """A result is served until ttl has passed on the injected clock, then recomputed."""
    calls: list[int] = []

    @cache.cached(ttl=60)
    def f(x: int) -> int:
        calls.append(x)
        return len(calls)

    assert f(1) == 1
    clock.advance(59)
    assert f(1) == 1
    clock.advance(2)
    assert f(1) == 2
    assert calls == [1, 1]


# -- soft expiry: stale_while_revalidate, stale_if_error -----------------------------


def test_stale_while_revalidate_serves_old_value_and_refreshes_once(
    cache: tc.Cache, clock: FakeClock
) -> None:
    """After ttl the old value is served at once while ONE background call refreshes it."""
    calls: list[int] = []
    lock = threading.Lock()
    refresh_started, release_refresh = threading.Event(), threading.Event()

    @cache.cached(ttl=0.2, stale_while_revalidate=30)
    def f(x: int) -> int:
        with lock:
            calls.append(x)
            n = len(calls)
        if n > 1:
            refresh_started.set()
            # The refresh stays in flight until the test lets it go: a read that
            # waited for it would get 2 (after WAIT seconds), not the stale 1.
            release_refresh.wait(WAIT)
        return n

    assert f(1) == 1
    clock.advance(0.3)
    served = [f(1) for _ in range(20)]
    assert refresh_started.wait(WAIT), "no background refresh started"
    assert served == [1] * 20, "stale reads waited for the refresh"
    release_refresh.set()
    assert wait_until(lambda: f(1) == 2)
    for thread in threading.enumerate():  # any refresh that was started has ended
        if thread.name == "tiercache-refresh":
            thread.join(WAIT)
    assert len(calls) == 2, f"{len(calls) - 1} refreshes ran, not one"


def test_async_stale_while_revalidate_refreshes_once_in_the_background() -> None:
    """An async function: after ttl the old value is served while one background task refreshes
    it."""
    calls: list[int] = []

    async def main() -> None:
        with tc.Cache(tiers=[tc.MemoryTier()]) as c:

            @c.cached(ttl=0.2, stale_while_revalidate=30)
            async def f(x: int) -> int:
                calls.append(x)
                n = len(calls)
                if n > 1:
                    await asyncio.sleep(0.1)
                return n

            assert await f(1) == 1
            await asyncio.sleep(0.3)
            assert [await f(1) for _ in range(20)] == [1] * 20
            for _ in range(500):  # at most ~5 s
                if await f(1) == 2:
                    break
                await asyncio.sleep(0.01)
            assert await f(1) == 2
            await asyncio.sleep(0.05)
            assert len(calls) == 2, f"{len(calls) - 1} refreshes ran, not one"

    asyncio.run(main())


def test_stale_while_revalidate_follows_the_injected_clock(
    cache: tc.Cache, clock: FakeClock
) -> None:
    """Soft expiry is read from Cache(clock=): advancing the fake clock past ttl triggers the
    refresh."""
    calls: list[int] = []

    @cache.cached(ttl=10, stale_while_revalidate=30)
    def f(x: int) -> int:
        calls.append(x)
        return len(calls)

    assert f(1) == 1
    clock.advance(11)
    assert f(1) == 1, "the stale value is served"
    assert wait_until(lambda: len(calls) == 2, 2.0), (
        "no background refresh after ttl on the fake clock"
    )
    assert wait_until(lambda: f(1) == 2)


def test_stale_if_error_serves_old_value_within_the_window_then_raises() -> None:
    """After ttl a raising function serves the old value for stale_if_error seconds, then raises."""
    state = {"fail": False, "calls": 0}

    with tc.Cache(tiers=[tc.MemoryTier()]) as c:

        @c.cached(ttl=0.2, stale_if_error=0.6)
        def f(x: int) -> str:
            state["calls"] += 1
            if state["fail"]:
                raise RuntimeError("backend down")
            return "fresh"

        assert f(1) == "fresh"
        state["fail"] = True
        time.sleep(0.3)  # past ttl, within ttl + stale_if_error
        assert f(1) == "fresh"
        assert state["calls"] == 2, "the function was retried once and its error absorbed"
        time.sleep(0.6)  # past ttl + stale_if_error
        with pytest.raises(RuntimeError, match="backend down"):
            f(1)


def test_stale_if_error_follows_the_injected_clock(cache: tc.Cache, clock: FakeClock) -> None:
    """stale_if_error's window is measured on Cache(clock=), like every TTL."""
    state = {"fail": False}

    @cache.cached(ttl=10, stale_if_error=20)
    def f(x: int) -> str:
        if state["fail"]:
            raise RuntimeError("backend down")
        return "fresh"

    assert f(1) == "fresh"
    state["fail"] = True
    clock.advance(15)  # stale, within stale_if_error after expiry (RFC 5861): served
    assert f(1) == "fresh"
    clock.advance(16)  # 31 s: past ttl + stale_if_error, the old value may no longer be served
    with pytest.raises(RuntimeError, match="backend down"):
        f(1)


# -- ttl_jitter -------------------------------------------------------------------------


def test_ttl_jitter_spreads_expiry_within_bounds(cache: tc.Cache, clock: FakeClock) -> None:
    """Entries written together get different TTLs, each in [ttl * (1 - jitter), ttl]."""

    @cache.cached(ttl=100, ttl_jitter=0.5)
    def f(x: int) -> int:
        return x

    now = clock()
    for i in range(40):
        f(i)
    ns = f.namespace
    l1 = cache.tiers[0]
    expiries = [l1.lookup(ns.tier_key(f.cache_key(i)))[1] for i in range(40)]
    ttls = [e - now for e in expiries]
    assert all(50.0 - 1e-9 <= t <= 100.0 + 1e-9 for t in ttls), ttls
    assert len({round(t, 6) for t in ttls}) > 20, f"TTLs not spread: {sorted(ttls)}"


def test_configuration_errors() -> None:
    """stale_* without ttl and a jitter outside [0, 1) are ConfigurationErrors at decoration."""
    with tc.Cache(tiers=[tc.MemoryTier()]) as c:

        def f(x: int) -> int:
            return x

        with pytest.raises(tc.ConfigurationError):
            c.cached(stale_while_revalidate=10)(f)
        with pytest.raises(tc.ConfigurationError):
            c.cached(stale_if_error=10)(f)
        for n, bad in enumerate((1.5, -0.1, 1.0, "0.2")):
            with pytest.raises(tc.ConfigurationError):
                c.cached(namespace=f"jitter{n}", ttl=10, ttl_jitter=bad)(f)  # type: ignore[arg-type]


# -- async functions and wrapping ------------------------------------------------------


def test_async_function_key_semantics_and_awaitable_invalidate_refresh(cache: tc.Cache) -> None:
    """An async function: the same key rules; await works; invalidate/refresh are awaitable."""
    calls: list[Any] = []
    source = {1: "one"}

    @cache.cached()
    async def f(a: int, b: int = 2, **extra: int) -> str:
        calls.append((a, b, extra))
        await asyncio.sleep(0)
        return source[a]

    async def main() -> None:
        assert await f(1) == await f(a=1) == await f(b=2, a=1) == "one"
        assert len(calls) == 1
        await f(1, x=1, y=2)
        await f(1, y=2, x=1)
        assert len(calls) == 2
        source[1] = "uno"
        invalidated = f.invalidate(1)
        assert inspect.isawaitable(invalidated)
        await invalidated
        assert await f(1) == "uno"
        assert len(calls) == 3
        source[1] = "eins"
        refreshed = f.refresh(a=1)
        assert inspect.isawaitable(refreshed)
        assert await refreshed == "eins"
        assert await f(1) == "eins"
        assert len(calls) == 4

    asyncio.run(main())
    assert f.cache_key(1) == f.cache_key(b=2, a=1)


def test_decorator_preserves_name_doc_and_kind(cache: tc.Cache) -> None:
    """functools.wraps: __name__, __doc__, __wrapped__; an async function stays a coroutine
    function."""

    def plain(x: int) -> int:
        """Plain docs."""
        return x

    async def coro(x: int) -> int:
        """Coroutine docs."""
        return x

    class Holder:
        def method(self, x: int) -> int:
            """Method docs."""
            return x

    for fn in (plain, coro, Holder.method):
        wrapped = cache.cached()(fn)
        assert wrapped.__name__ == fn.__name__
        assert wrapped.__qualname__ == fn.__qualname__
        assert wrapped.__doc__ == fn.__doc__
        assert wrapped.__wrapped__ is fn
        assert inspect.iscoroutinefunction(wrapped) == inspect.iscoroutinefunction(fn)


def test_bound_cached_method_exposes_namespace_and_cache_key() -> None:
    """obj.method.namespace and obj.method.cache_key(x) work like Class.method's."""
    with tc.Cache(tiers=[tc.MemoryTier()]) as c:

        class Repo:
            @c.cached(ttl=60)
            def find(self, x: int) -> int:
                return x

        repo = Repo()
        assert repo.find.namespace is Repo.find.namespace
        assert repo.find.cache_key(5) == Repo.find.cache_key(repo, 5) == 5
