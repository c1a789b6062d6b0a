"""The single-process state machine: one Cache over a tier stack and a store, against a model."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from .._types import MISSING, Key
from ..cache import Cache
from ..namespace import Namespace
from ..stores.base import Store
from ..stores.mapping import MappingStore
from ..tiers.base import Tier
from ..tiers.memory import MemoryTier
from ._machine_kit import (
    MARKS,
    NAMESPACE,
    STEPS,
    VALUES,
    ExpiryEdges,
    same_value,
    show,
    unlink_prefix,
)
from .clock import FakeClock
from .strategies import KEY_SPACE, small_keys

__all__ = ["CacheMachine"]


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
        self.edges = ExpiryEdges(
            [lifetime(t) for t in self.tiers] + ([self.cache.max_staleness] if self.bus else [])
        )

    def teardown(self) -> None:
        try:
            self.cache.close()
        finally:
            unlink_prefix(self.tiers, self.prefix)

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
            f"{how}({key!r}) returned {show(got)}; the model allows "
            f"{' or '.join(map(show, allowed))} (t={self.clock()})"
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

    @rule(key=small_keys(), value=VALUES, unique=MARKS)
    def set(self, key: Key, value: Any, unique: bool) -> None:
        value = self._mark(value, unique)
        self.ns.set(key, value)
        self._written({key: value})

    @rule(items=st.dictionaries(small_keys(), VALUES, max_size=4), unique=MARKS)
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

    @rule(seconds=STEPS)
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
