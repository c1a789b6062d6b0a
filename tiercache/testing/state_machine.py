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

from ._cache_machine import CacheMachine
from ._machine_kit import NAMESPACE as NAMESPACE
from ._machine_kit import same_value
from ._two_process_machine import TwoProcessTTLMachine

__all__ = ["CacheMachine", "TwoProcessTTLMachine", "same_value"]
