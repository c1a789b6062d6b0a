"""Hypothesis state machines that drive caches against a model and check every read.

Two machines ship:

- :class:`CacheMachine`: one ``Cache`` (one process) over a tier stack and
  an optional store, with the default WriteThrough and Purge. Every read
  must equal the model exactly.
- :class:`TwoProcessTTLMachine`: two ``Cache`` objects (two processes' views)
  sharing one L2 and one store under ``TTL(T)`` invalidation. Every read must
  be a value the TTL bound allows.

Run one as a test with :func:`hypothesis.stateful.run_state_machine_as_test`,
or configure a subclass::

    from hypothesis.stateful import run_state_machine_as_test
    from tiercache.testing.state_machine import CacheMachine

    def test_my_stack():
        machine = CacheMachine.configure(
            "MyStack", tiers=lambda: [MemoryTier(), RedisTier.embedded()],
            store=MappingStore,
        )
        run_state_machine_as_test(machine)

Time is a :class:`~tiercache.testing.FakeClock` shared by the caches. Tiers
that expire by their own clock (Redis) do not follow it, which the models
take into account (see each machine's docstring). Each machine instance uses
a key prefix of its own and removes its keys from every Redis tier when it
is torn down.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from .._types import MISSING, Key
from ..cache import Cache
from ..invalidation import TTL
from ..namespace import Namespace
from ..redis import RedisTier
from ..stores.base import Store
from ..stores.mapping import MappingStore
from ..tiers.base import Tier
from ..tiers.memory import MemoryTier
from .clock import FakeClock
from .strategies import KEY_SPACE, small_keys, values

__all__ = ["CacheMachine", "TwoProcessTTLMachine", "same_value"]

NAMESPACE = "items"
"""The namespace the machines drive."""

_STEPS = st.sampled_from([0.25, 1.0, 2.5, 5.0, 7.5, 10.0, 12.5, 30.0])
"""Clock steps: exact binary fractions, so model and tiers agree on every boundary,
and few, so that their sums keep landing exactly on TTLs of 2.5, 5 or 10 seconds."""

_VALUES = values(max_leaves=4)

_MARKS = st.booleans()
"""Whether to mark a written value as unique: drawn values are often equal (``None``,
``0``), and a stale copy equal to the fresh value cannot be told apart from it."""

_FEW_KEY_SPACE: tuple[Key, ...] = ("a", 1, ("a", 1), "L" * 200)
_FEW_KEYS = st.sampled_from(_FEW_KEY_SPACE)
"""Keys of the two-process machine: few, so that both processes keep meeting on one."""


def same_value(a: Any, b: Any) -> bool:
    """True when ``b`` is ``a`` as a round trip must return it: equal, and of the same types.

    Stricter than ``==``: ``1`` is not ``True`` or ``1.0``, a tuple is not a
    list, ``Decimal("1.0")`` is not ``Decimal("1.00")``, ``-0.0`` is not
    ``0.0``, and an aware datetime keeps its offset.
    """
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b)
        return bool(a == b and math.copysign(1.0, a) == math.copysign(1.0, b))
    if isinstance(a, Decimal):
        return bool(a.as_tuple() == b.as_tuple())
    if isinstance(a, dt.datetime):
        return (
            (a.tzinfo is None) == (b.tzinfo is None) and a == b and a.utcoffset() == b.utcoffset()
        )
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        if a.keys() != b.keys():
            return False
        b_keys = {k: k for k in b}  # b's own key objects, to compare their types
        return all(
            type(b_keys[k]) is type(k) and same_value(v, b[k]) for k, v in a.items()
        )
    if isinstance(a, (set, frozenset)):
        return bool(a == b) and Counter(map(type, a)) == Counter(map(type, b))
    return bool(a == b)


class _Edges:
    """Recent times at which copies were written, to step the clock onto their expiry.

    Boundary bugs (``>=`` for ``>``, a TTL off by one step) show only when a
    read lands exactly on an expiry time, which random steps seldom hit.
    """

    def __init__(self, lifetimes: Iterable[float]) -> None:
        self.lifetimes = sorted({t for t in lifetimes if math.isfinite(t)})
        self.times: list[float] = []

    def note(self, now: float) -> None:
        if self.lifetimes and (not self.times or self.times[-1] != now):
            self.times = [*self.times[-11:], now]

    def ahead(self, now: float) -> list[float]:
        """Expiry times after ``now``, and a quarter second either side of each."""
        return sorted({
            at + life + nudge
            for at in self.times
            for life in self.lifetimes
            for nudge in (-0.25, 0.0, 0.25)
            if at + life + nudge > now
        })


def _show(value: Any) -> str:
    return "MISSING" if value is MISSING else f"{value!r:.200}"


def _unlink_prefix(tiers: Iterable[Tier], prefix: str) -> None:
    """Remove the machine's keys from every Redis tier (SCAN ``prefix:*``, UNLINK)."""
    seen: set[int] = set()
    for tier in tiers:
        client = getattr(tier, "client", None)
        if not isinstance(tier, RedisTier) or client is None or id(client) in seen:
            continue
        seen.add(id(client))
        batch = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if batch:
            client.unlink(*batch)


class CacheMachine(RuleBasedStateMachine):
    """One process: a ``Cache`` over a tier stack and an optional store, and a model.

    The namespace uses the defaults, WriteThrough and Purge, so within one
    process the cache is coherent:

    - with a store, every read equals the model of the store exactly
      (``MISSING`` when the store has no value), whatever the TTLs, the
      evictions and the clock say: a copy that expired or was evicted is
      loaded again;
    - without a store (a pure cache), a read after ``set`` is the value and
      after ``delete``, ``invalidate`` or ``invalidate_all`` it is
      ``MISSING``. With TTLs, the value is certain while a MemoryTier that
      cannot evict it (``maxsize`` at least the key space, no ``maxbytes``)
      still holds it by the fake clock; once every tier's TTL has passed it
      is ``MISSING`` if every tier is a MemoryTier. In between, and whenever
      a Redis tier (which expires by real time) is what still holds it, the
      read may be the value or ``MISSING``, never anything else.

    Configure by subclassing (override :meth:`make_tiers`, :meth:`make_store`,
    set ``ttl`` and ``bus``) or with :meth:`configure`.
    """

    ttl: ClassVar[float | None] = None
    """The namespace's ``ttl=``: a ceiling in every tier."""

    bus: ClassVar[bool] = False
    """``Cache(bus=...)``. One process needs no bus; off also keeps examples fast."""

    def make_tiers(self) -> Sequence[Tier]:
        """Return fresh tiers, fastest first."""
        return [MemoryTier()]

    def make_store(self) -> Store | None:
        """Return a fresh store (``None``: a pure cache)."""
        return MappingStore()

    @classmethod
    def configure(
        cls,
        name: str,
        *,
        tiers: Callable[[], Sequence[Tier]],
        store: Callable[[], Store] | None = None,
        ttl: float | None = None,
        bus: bool = False,
    ) -> type[CacheMachine]:
        """Return a subclass named ``name`` over these tiers and store.

        Args:
            tiers: called once per example for a fresh tier stack.
            store: called once per example for a fresh store; ``None``: a pure cache.
            ttl: the namespace's TTL ceiling.
            bus: start the invalidation bus (a thread per example).
        """

        def make_tiers(self: CacheMachine) -> Sequence[Tier]:
            return tiers()

        def make_store(self: CacheMachine) -> Store | None:
            return None if store is None else store()

        namespace = {"make_tiers": make_tiers, "make_store": make_store, "ttl": ttl, "bus": bus}
        return type(name, (cls,), namespace)

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.prefix = "sm" + uuid.uuid4().hex[:12]
        self.tiers = list(self.make_tiers())
        self.store = self.make_store()
        self.cache = Cache(
            tiers=self.tiers, store=self.store, prefix=self.prefix, clock=self.clock, bus=self.bus
        )
        self.ns: Namespace = self.cache.namespace(NAMESPACE, ttl=self.ttl)
        # The model of the store (with a store) ...
        self.stored: dict[Key, Any] = {}
        if self.store is not None:
            self.stored = dict(self.store.load_many(list(KEY_SPACE)))
        # ... or of the pure cache: value and the fake time it was written.
        self.cached: dict[Key, tuple[Any, float]] = {}
        self.serial = 0
        # How long a pure cache's copy lasts, from the tiers' TTLs on the fake
        # clock. A MemoryTier that cannot evict our keys guarantees the value
        # for its TTL (capped at max_staleness while a bus may be deaf); once
        # every tier's TTL has passed, a stack of MemoryTiers has nothing left.
        def lifetime(tier: Tier) -> float:
            ttls = [t for t in (tier.ttl, self.ttl) if t is not None]
            return min(ttls) if ttls else math.inf

        keeping = [
            lifetime(t) for t in self.tiers
            if isinstance(t, MemoryTier) and t.maxsize >= len(KEY_SPACE) and t.maxbytes is None
        ]
        if self.bus:
            keeping = [min(t, self.cache.max_staleness) for t in keeping]
        self.certain_for = max(keeping, default=-math.inf)
        self.gone_after = max((lifetime(t) for t in self.tiers), default=-math.inf)
        self.edges = _Edges(
            [lifetime(t) for t in self.tiers] + ([self.cache.max_staleness] if self.bus else [])
        )
    def teardown(self) -> None:
        try:
            self.cache.close()
        finally:
            _unlink_prefix(self.tiers, self.prefix)

    @property
    def expires_by_clock(self) -> bool:
        """True when every tier expires entries by the fake clock (MemoryTiers only)."""
        return all(isinstance(t, MemoryTier) for t in self.tiers)

    # -- the model ------------------------------------------------------------

    def allowed(self, key: Key) -> list[Any]:
        """The values a read of ``key`` may return now (``MISSING``: absent)."""
        if self.store is not None:
            return [self.stored.get(key, MISSING)]
        entry = self.cached.get(key)
        if entry is None:
            return [MISSING]
        value, written = entry
        now = self.clock()
        if written + self.certain_for > now:
            return [value]
        if written + self.gone_after <= now and self.expires_by_clock:
            return [MISSING]
        return [value, MISSING]

    def check(self, key: Key, got: Any, how: str, default: Any = MISSING) -> None:
        """Assert that ``got`` is an allowed answer (``default`` standing for absent)."""
        self.edges.note(self.clock())  # a read may have filled a tier
        allowed = [default if want is MISSING else want for want in self.allowed(key)]
        assert any(
            got is want if want is default else same_value(want, got) for want in allowed
        ), (
            f"{how}({key!r}) returned {_show(got)}; the model allows "
            f"{' or '.join(map(_show, allowed))} (t={self.clock()})"
        )

    def _written(self, items: dict[Key, Any]) -> None:
        self.edges.note(self.clock())
        if self.store is not None:
            self.stored.update(items)
        else:
            now = self.clock()
            for key, value in items.items():
                self.cached[key] = (value, now)

    # -- rules ----------------------------------------------------------------

    @rule(key=small_keys(), default=st.sampled_from([MISSING, None]))
    def get(self, key: Key, default: Any) -> None:
        self.check(key, self.ns.get(key, default=default), "get", default)

    @rule(keys=st.lists(small_keys(), max_size=5))
    def get_many(self, keys: list[Key]) -> None:
        got = self.ns.get_many(keys)
        assert set(got) <= set(keys), f"get_many({keys!r}) answered other keys: {got!r}"
        for key in keys:
            self.check(key, got.get(key, MISSING), "get_many")

    @rule()
    def get_every_key(self) -> None:
        got = self.ns.get_many(KEY_SPACE)
        for key in KEY_SPACE:
            self.check(key, got.get(key, MISSING), "get_many")

    def _mark(self, value: Any, unique: bool) -> Any:
        """``value`` itself, or (when ``unique``) a tuple no earlier write used."""
        if not unique:
            return value
        self.serial += 1
        return (self.serial, value)

    @rule(key=small_keys(), value=_VALUES, unique=_MARKS)
    def set(self, key: Key, value: Any, unique: bool) -> None:
        value = self._mark(value, unique)
        self.ns.set(key, value)
        self._written({key: value})

    @rule(items=st.dictionaries(small_keys(), _VALUES, max_size=4), unique=_MARKS)
    def set_many(self, items: dict[Key, Any], unique: bool) -> None:
        items = {key: self._mark(value, unique) for key, value in items.items()}
        self.ns.set_many(items)
        self._written(items)

    @rule(key=small_keys())
    def delete(self, key: Key) -> None:
        self.ns.delete(key)
        self.stored.pop(key, None)
        self.cached.pop(key, None)

    @rule(keys=st.lists(small_keys(), max_size=4))
    def delete_many(self, keys: list[Key]) -> None:
        self.ns.delete_many(keys)
        for key in keys:
            self.stored.pop(key, None)
            self.cached.pop(key, None)

    @rule(key=small_keys())
    def invalidate(self, key: Key) -> None:
        self.ns.invalidate(key)
        self.cached.pop(key, None)

    @rule()
    def invalidate_all(self) -> None:
        self.ns.invalidate_all()
        self.cached.clear()

    @rule(seconds=_STEPS)
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @precondition(lambda self: bool(self.edges.ahead(self.clock())))
    @rule(pick=st.integers(0, 15))
    def advance_to_expiry(self, pick: int) -> None:
        ahead = self.edges.ahead(self.clock())
        self.clock.advance(ahead[pick % len(ahead)] - self.clock())

    # -- invariants -----------------------------------------------------------

    @precondition(lambda self: self.store is not None)
    @invariant()
    def store_matches_model(self) -> None:
        assert self.store is not None
        content = self.store.load_many(list(KEY_SPACE))
        assert content.keys() == self.stored.keys(), (
            f"store holds {sorted(map(repr, content))}, model {sorted(map(repr, self.stored))}"
        )
        for key, value in self.stored.items():
            assert same_value(value, content[key]), (
                f"store[{key!r}] = {content[key]!r}, not {value!r}"
            )

    @invariant()
    def memory_tiers_within_bounds(self) -> None:
        for tier in self.tiers:
            if isinstance(tier, MemoryTier):
                assert len(tier) <= tier.maxsize


class TwoProcessTTLMachine(RuleBasedStateMachine):
    """Two processes' caches sharing one L2 and one store under ``TTL(T)``.

    Each process ``p`` in ``(0, 1)`` is a ``Cache`` with its own
    ``MemoryTier(ttl=T)`` and its own ``RedisTier`` on one shared server
    (same prefix), and its own store object over one shared mapping; the
    namespace uses WriteThrough and ``invalidation=TTL(T)``, so nothing is
    broadcast: a process learns of the other's writes only when its own
    L1 copy expires. ``T`` is on the shared fake clock.

    The model keeps, per key, the history of the store's values:
    ``[(t_0, v_0), (t_1, v_1), ...]`` with the time each was written
    (``MISSING`` for a delete; the history starts with ``MISSING`` at minus
    infinity). Value ``v_i`` was the store's value during ``[t_i, t_{i+1}]``.

    Allowed set of a read at time ``now``: ``{v_i : v_i is the last value, or
    t_{i+1} + T > now}``, i.e. the current value and every value replaced
    less than ``T`` ago. ``MISSING`` is a possible answer only when it is in
    that set.

    Why: every copy a process holds in its L1 was, when it was put there at
    time ``f``, the store's current value (WriteThrough writes the store
    before the tiers; a fill from the store reads the current value; a fill
    from L2 copies L2, which below always holds the current value or nothing),
    and it lives until ``f + T`` at the latest (``expires_at > now`` to be
    served; a fill from L2 takes the smaller of ``T`` and L2's remaining
    TTL). So a served copy ``v_i`` was current at some ``f > now - T``:
    either it is still current, or it was replaced at ``t_{i+1} >= f``, hence
    ``t_{i+1} + T > now``. Note this is not "written in the last ``T``
    seconds": a value written long ago may be cached just before it is
    replaced and then served for up to ``T`` more.

    L2 never holds an older value: every write, delete and invalidate by
    either process rewrites or drops the L2 copy after changing the store,
    and every fill writes the value just read from the store. Redis expires
    its copies by real time (``TTL(T)`` puts ``T`` real seconds on them),
    which the fake clock does not control; an L2 copy that disappears early
    only sends a read to the store, which answers with the current value, so
    expiry by real time never widens the allowed set. Hence the L1 TTL on the
    fake clock is the bound that the model checks.
    """

    T: ClassVar[float] = 10.0
    """The TTL of the L1s and of the strategy, in fake-clock seconds."""

    def make_l2(self) -> Tier:
        """Return a fresh L2 tier on the server the two processes share."""
        return RedisTier.embedded()

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.prefix = "sm" + uuid.uuid4().hex[:12]
        self.shared: dict[Key, Any] = {}
        self.l2s = [self.make_l2(), self.make_l2()]
        self.caches = [
            Cache(
                tiers=[MemoryTier(ttl=self.T), l2],
                store=MappingStore(self.shared),
                prefix=self.prefix,
                clock=self.clock,
            )
            for l2 in self.l2s
        ]
        self.nss = [c.namespace(NAMESPACE, invalidation=TTL(self.T)) for c in self.caches]
        self.history: dict[Key, list[tuple[float, Any]]] = {}
        self.serial = 0
        self.edges = _Edges([self.T])

    def teardown(self) -> None:
        try:
            for cache in self.caches:
                cache.close()
        finally:
            _unlink_prefix(self.l2s, self.prefix)

    # -- the model ------------------------------------------------------------

    def allowed(self, key: Key) -> list[Any]:
        """The values a read of ``key`` may return now, by either process."""
        history = [(-math.inf, MISSING), *self.history.get(key, [])]
        now = self.clock()
        return [
            value
            for i, (_written, value) in enumerate(history)
            if i == len(history) - 1 or history[i + 1][0] + self.T > now
        ]

    def check(self, p: int, key: Key, got: Any, how: str) -> None:
        """Assert that process ``p`` read a value the model allows for ``key`` now."""
        self.edges.note(self.clock())  # a read may have filled an L1
        allowed = self.allowed(key)
        assert any(
            got is MISSING if want is MISSING else same_value(want, got) for want in allowed
        ), (
            f"process {p}: {how}({key!r}) returned {_show(got)}; the model allows "
            f"{' or '.join(map(_show, allowed))} (t={self.clock()}, "
            f"history {[(t, _show(v)) for t, v in self.history.get(key, [])]})"
        )

    def _record(self, key: Key, value: Any) -> None:
        self.edges.note(self.clock())
        self.history.setdefault(key, []).append((self.clock(), value))

    # -- rules ----------------------------------------------------------------

    @rule(p=st.integers(0, 1), key=_FEW_KEYS)
    def get(self, p: int, key: Key) -> None:
        self.check(p, key, self.nss[p].get(key, default=MISSING), "get")

    @rule(p=st.integers(0, 1), keys=st.lists(_FEW_KEYS, max_size=5))
    def get_many(self, p: int, keys: list[Key]) -> None:
        got = self.nss[p].get_many(keys)
        assert set(got) <= set(keys), f"get_many({keys!r}) answered other keys: {got!r}"
        for key in keys:
            self.check(p, key, got.get(key, MISSING), "get_many")

    @rule(p=st.integers(0, 1))
    def get_every_key(self, p: int) -> None:
        got = self.nss[p].get_many(_FEW_KEY_SPACE)
        for key in _FEW_KEY_SPACE:
            self.check(p, key, got.get(key, MISSING), "get_many")

    def _mark(self, value: Any) -> Any:
        """A value no earlier write used, so that every stale read shows."""
        self.serial += 1
        return (self.serial, value)

    @rule(p=st.integers(0, 1), key=_FEW_KEYS, value=_VALUES)
    def set(self, p: int, key: Key, value: Any) -> None:
        value = self._mark(value)
        self.nss[p].set(key, value)
        self._record(key, value)

    @rule(p=st.integers(0, 1), items=st.dictionaries(_FEW_KEYS, _VALUES, max_size=4))
    def set_many(self, p: int, items: dict[Key, Any]) -> None:
        items = {key: self._mark(value) for key, value in items.items()}
        self.nss[p].set_many(items)
        for key, value in items.items():
            self._record(key, value)

    @rule(p=st.integers(0, 1), key=_FEW_KEYS)
    def delete(self, p: int, key: Key) -> None:
        self.nss[p].delete(key)
        self._record(key, MISSING)

    @rule(p=st.integers(0, 1), key=_FEW_KEYS)
    def invalidate(self, p: int, key: Key) -> None:
        self.nss[p].invalidate(key)

    @rule(p=st.integers(0, 1))
    def invalidate_all(self, p: int) -> None:
        self.nss[p].invalidate_all()

    @rule(seconds=_STEPS)
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @precondition(lambda self: bool(self.edges.ahead(self.clock())))
    @rule(pick=st.integers(0, 15))
    def advance_to_expiry(self, pick: int) -> None:
        ahead = self.edges.ahead(self.clock())
        self.clock.advance(ahead[pick % len(ahead)] - self.clock())

    # -- invariants -----------------------------------------------------------

    @invariant()
    def store_is_the_latest_write(self) -> None:
        for key, history in self.history.items():
            latest = history[-1][1]
            if latest is MISSING:
                assert key not in self.shared, f"store still holds deleted {key!r}"
            else:
                assert key in self.shared and same_value(latest, self.shared[key])
