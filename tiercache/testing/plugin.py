"""pytest plugin: fixtures for testing code that uses tiercache.

Installed with tiercache and loaded by pytest automatically (the
``pytest11`` entry point). Fixtures:

- ``tiercache_clock``: a :class:`FakeClock`; advance it to expire entries.
- ``tiercache_scheduler``: a :class:`ManualScheduler`; write-back flushes
  run only when you call ``flush()`` or ``run_pending()``.
- ``tiercache_cache``: a ``Cache`` of MemoryTier + the embedded Redis, a
  ``MappingStore`` (``tiercache_cache.store``), the clock and scheduler above,
  and a key prefix of its own; closed, and its keys removed, after the test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from ..cache import Cache
from ..redis import RedisTier
from ..stores.mapping import MappingStore
from ..tiers.memory import MemoryTier
from .clock import FakeClock
from .scheduler import ManualScheduler

__all__ = ["tiercache_cache", "tiercache_clock", "tiercache_scheduler"]


@pytest.fixture
def tiercache_clock() -> FakeClock:
    """A fake monotonic clock for one test."""
    return FakeClock()


@pytest.fixture
def tiercache_scheduler() -> ManualScheduler:
    """Background jobs that run only when the test says so."""
    return ManualScheduler()


@pytest.fixture
def tiercache_cache(
    tiercache_clock: FakeClock, tiercache_scheduler: ManualScheduler
) -> Iterator[Cache]:
    """An embedded cache (memory + in-process Redis + a dict store) for one test."""
    l2 = RedisTier.embedded()
    prefix = "test" + uuid.uuid4().hex[:12]
    cache = Cache(
        tiers=[MemoryTier(), l2],
        store=MappingStore(),
        prefix=prefix,
        clock=tiercache_clock,
        scheduler=tiercache_scheduler,
    )
    try:
        yield cache
    finally:
        cache.close()
        cleaner = RedisTier.embedded()
        cleaner.delete_prefix(prefix + ":")
        cleaner.close()
