"""Testing kit: a fake clock, fakes, contract suites, hypothesis strategies and state machines.

The contract suites import pytest; import them from their modules
(``tiercache.testing.tier_contract``, ``tiercache.testing.store_contract``)
in test code only.
"""

from .clock import FakeClock
from .fakes import FakeJournalTier, FakeStore, FakeTarget, FakeTier

__all__ = ["FakeClock", "FakeJournalTier", "FakeStore", "FakeTarget", "FakeTier"]
