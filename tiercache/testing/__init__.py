"""Testing kit: a fake clock, contract suites, hypothesis strategies and state machines.

The contract suites import pytest; import them from their modules
(``tiercache.testing.tier_contract``, ``tiercache.testing.store_contract``)
in test code only.
"""

from .clock import FakeClock

__all__ = ["FakeClock"]
