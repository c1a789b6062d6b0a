"""The two-process state machine: two caches sharing one L2 and one store under TTL."""

from __future__ import annotations

import math
import uuid
from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from .._types import MISSING, Key
from ..cache import Cache
from ..invalidation import TTL
from ..redis import RedisTier
from ..stores.mapping import MappingStore
from ..tiers.base import Tier
from ..tiers.memory import MemoryTier
from ._machine_kit import NAMESPACE, STEPS, VALUES, ExpiryEdges, same_value, show, unlink_prefix
from .clock import FakeClock

__all__ = ["TwoProcessTTLMachine"]

_FEW_KEY_SPACE: tuple[Key, ...] = ("a", 1, ("a", 1), "L" * 200)
_FEW_KEYS = st.sampled_from(_FEW_KEY_SPACE)
"""Keys of the two-process machine: few, so that both processes keep meeting on one."""


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
        self.edges = ExpiryEdges([self.T])

    def teardown(self) -> None:
        try:
            for cache in self.caches:
                cache.close()
        finally:
            unlink_prefix(self.l2s, self.prefix)

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
            f"process {p}: {how}({key!r}) returned {show(got)}; the model allows "
            f"{' or '.join(map(show, allowed))} (t={self.clock()}, "
            f"history {[(t, show(v)) for t, v in self.history.get(key, [])]})"
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

    @rule(p=st.integers(0, 1), key=_FEW_KEYS, value=VALUES)
    def set(self, p: int, key: Key, value: Any) -> None:
        value = self._mark(value)
        self.nss[p].set(key, value)
        self._record(key, value)

    @rule(p=st.integers(0, 1), items=st.dictionaries(_FEW_KEYS, VALUES, max_size=4))
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

    @rule(seconds=STEPS)
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
