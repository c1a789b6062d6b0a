"""The tier contract: behaviour every Tier implementation must show.

Subclass :class:`TierContract` in a test module (name the subclass
``Test...``), implement :meth:`make_tier`, and pytest runs every test below
against your tier. Modelled on dogpile.cache's ``_GenericBackendTestSuite``.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from ..tiers.base import Tier
from .clock import FakeClock

__all__ = ["TierContract"]


class TierContract:
    """Tests every tier passes. Subclasses implement ``make_tier``.

    ``expires_by_clock`` is True for tiers that expire entries by the
    ``now`` they are given (MemoryTier); tiers that expire by their own
    clock (Redis) set it False and are checked against real time instead.
    """

    expires_by_clock = True

    def make_tier(self) -> Tier:
        """Return a fresh, empty tier."""
        raise NotImplementedError

    # -- fixtures -------------------------------------------------------------

    @pytest.fixture
    def tier(self) -> Iterator[Tier]:
        made = self.make_tier()
        yield made
        made.close()

    @pytest.fixture
    def ns(self) -> str:
        """A unique key head per test, so tiers on a shared server never collide."""
        return f"tc{uuid.uuid4().hex[:10]}:ns:"

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    def value(self, tier: Tier, text: str) -> Any:
        """What the namespace would hand this tier for ``text``: bytes or the object."""
        return ("\x01" + text).encode() if tier.serialized else {"v": text}

    def check_invariants(self, tier: Tier) -> None:
        """After each test: a bounded tier holds no more than its bounds."""
        maxsize = getattr(tier, "maxsize", None)
        if maxsize is not None and hasattr(tier, "__len__"):
            assert len(tier) <= maxsize  # type: ignore[arg-type]
        maxbytes = getattr(tier, "maxbytes", None)
        currbytes = getattr(tier, "currbytes", None)
        if maxbytes is not None and currbytes is not None:
            assert currbytes <= maxbytes

    # -- the contract ---------------------------------------------------------

    def test_miss_is_none(self, tier: Tier, ns: str, clock: FakeClock) -> None:
        """A key never written reads as None (a miss), never an exception."""
        assert tier.get_many([ns + "s:absent"], clock()) == [None]
        self.check_invariants(tier)

    def test_set_then_get_round_trips(self, tier: Tier, ns: str, clock: FakeClock) -> None:
        """A value written without a TTL comes back equal, expiring only by the tier's own ttl."""
        v = self.value(tier, "hello")
        tier.set_many([(ns + "s:a", v, None, 8)], clock())
        [hit] = tier.get_many([ns + "s:a"], clock())
        assert isinstance(hit, tuple), hit
        assert hit[0] == v
        if tier.ttl is None:
            assert hit[1] is None
        else:  # the tier's ceiling applies to entries written without a TTL
            assert hit[1] is not None and 0 < hit[1] <= tier.ttl
        self.check_invariants(tier)

    def test_batch_answers_in_order(self, tier: Tier, ns: str, clock: FakeClock) -> None:
        """get_many answers key by key in the order asked, misses included."""
        entries = [(f"{ns}i:{i}", self.value(tier, str(i)), None, 4) for i in range(50)]
        tier.set_many(entries, clock())
        keys = [f"{ns}i:{i}" for i in range(0, 60, 3)]
        answers = tier.get_many(keys, clock())
        for i, answer in zip(range(0, 60, 3), answers, strict=True):
            if i < 50:
                assert isinstance(answer, tuple) and answer[0] == self.value(tier, str(i))
            else:
                assert answer is None
        self.check_invariants(tier)

    def test_overwrite_replaces(self, tier: Tier, ns: str, clock: FakeClock) -> None:
        """A second write to a key replaces the first."""
        tier.set_many([(ns + "s:k", self.value(tier, "old"), None, 4)], clock())
        tier.set_many([(ns + "s:k", self.value(tier, "new"), None, 4)], clock())
        [hit] = tier.get_many([ns + "s:k"], clock())
        assert isinstance(hit, tuple) and hit[0] == self.value(tier, "new")

    def test_ttl_reported_and_bounded(self, tier: Tier, ns: str, clock: FakeClock) -> None:
        """An entry written with a TTL reports a remaining TTL no longer than it."""
        tier.set_many([(ns + "s:t", self.value(tier, "x"), 30.0, 4)], clock())
        [hit] = tier.get_many([ns + "s:t"], clock())
        assert isinstance(hit, tuple) and hit[1] is not None
        assert 0 < hit[1] <= 30.0

    def test_expired_entry_is_a_miss(self, tier: Tier, ns: str, clock: FakeClock) -> None:
        """Once its TTL has passed an entry is never returned."""
        if self.expires_by_clock:
            tier.set_many([(ns + "s:e", self.value(tier, "x"), 5.0, 4)], clock())
            clock.advance(5.001)
            assert tier.get_many([ns + "s:e"], clock()) == [None]
        else:
            import time

            tier.set_many([(ns + "s:e", self.value(tier, "x"), 0.05, 4)], clock())
            time.sleep(0.12)
            assert tier.get_many([ns + "s:e"], clock()) == [None]

    def test_tier_ttl_is_a_ceiling(self, tier: Tier, ns: str, clock: FakeClock) -> None:
        """A tier's own ttl caps longer entry TTLs and entries with none."""
        if tier.ttl is None:
            return
        tier.set_many([(ns + "s:c", self.value(tier, "x"), None, 4)], clock())
        [hit] = tier.get_many([ns + "s:c"], clock())
        assert isinstance(hit, tuple) and hit[1] is not None and hit[1] <= tier.ttl

    def test_tier_ttl_ceiling_expires(self, tier: Tier, ns: str, clock: FakeClock) -> None:
        """An entry written with no TTL is a miss once the tier's own ttl has passed."""
        if tier.ttl is None or not self.expires_by_clock:
            return  # a clock-free tier's ceiling is checked as a reported TTL above
        tier.set_many([(ns + "s:c", self.value(tier, "x"), None, 4)], clock())
        clock.advance(tier.ttl)
        assert tier.get_many([ns + "s:c"], clock()) == [None]
        self.check_invariants(tier)

    def test_delete_many(self, tier: Tier, ns: str, clock: FakeClock) -> None:
        """Deleted keys read as misses; absent keys in a delete are ignored."""
        tier.set_many([(ns + "s:a", self.value(tier, "a"), None, 4),
                       (ns + "s:b", self.value(tier, "b"), None, 4)], clock())
        tier.delete_many([ns + "s:a", ns + "s:never"])
        a, b = tier.get_many([ns + "s:a", ns + "s:b"], clock())
        assert a is None and b is not None

    def test_delete_prefix_is_scoped(self, tier: Tier, ns: str, clock: FakeClock) -> None:
        """delete_prefix removes that prefix's keys only."""
        other = ns.replace(":ns:", ":other:")
        tier.set_many([(f"{ns}i:{i}", self.value(tier, "x"), None, 4) for i in range(30)]
                      + [(other + "s:keep", self.value(tier, "k"), None, 4)], clock())
        tier.delete_prefix(ns)
        assert tier.get_many([f"{ns}i:{i}" for i in range(30)], clock()) == [None] * 30
        [kept] = tier.get_many([other + "s:keep"], clock())
        assert kept is not None
        tier.delete_prefix(other)

    def test_long_keys_are_distinct(self, tier: Tier, ns: str, clock: FakeClock) -> None:
        """Keys far over any length limit still store and read back one value each."""
        k1, k2 = ns + "s:" + "x" * 5000, ns + "s:" + "x" * 4999 + "y"
        tier.set_many([(k1, self.value(tier, "1"), None, 4), (k2, self.value(tier, "2"), None, 4)],
                      clock())
        h1, h2 = tier.get_many([k1, k2], clock())
        assert isinstance(h1, tuple) and isinstance(h2, tuple)
        assert h1[0] == self.value(tier, "1") and h2[0] == self.value(tier, "2")

    def test_concurrent_use_is_consistent(self, tier: Tier, ns: str, clock: FakeClock) -> None:
        """8 threads writing and reading their own keys each read back what they wrote."""
        failures: list[str] = []

        def worker(n: int) -> None:
            for i in range(50):
                key = f"{ns}t:{n}:{i}"
                v = self.value(tier, f"{n}-{i}")
                tier.set_many([(key, v, None, 4)], clock())
                [hit] = tier.get_many([key], clock())
                if not isinstance(hit, tuple) or hit[0] != v:
                    failures.append(key)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert not failures
        self.check_invariants(tier)

    def test_close_is_idempotent(self, tier: Tier) -> None:
        """close() twice is harmless."""
        tier.close()
        tier.close()
