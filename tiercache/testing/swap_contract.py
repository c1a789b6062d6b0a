"""The swap contract: policies and strategies changed at run time lose and stale nothing.

A second suite on top of :class:`~tiercache.testing.policy_contract.PolicyContract`
(as dogpile's serializer suite extends its backend suite): subclass
:class:`SwapContract` instead to run both against a cell. It drives
``configure()`` between write policies and invalidation strategies while
writes are pending and readers run.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ..invalidation import TTL, Invalidation, Purge, Versioned
from ..namespace import Namespace
from ..policies import WriteBack, WriteThrough
from ._contract_invariants import RecordingStore
from .policy_contract import NEVER, PolicyContract

__all__ = ["SwapContract"]


class SwapContract(PolicyContract):
    """The policy contract, plus run-time swaps of this cell's policy and strategy."""

    def test_configure_swap_from_write_back_loses_nothing(self, store: RecordingStore) -> None:
        """WriteBack with writes pending swapped for this cell's policy: none lost, none stale."""
        ns = self.make_cache(write=WriteBack(flush_interval=NEVER))
        store.mapping["k"] = "old"
        assert ns.get("k") == "old"  # cached everywhere
        ns.set("k", "new")
        ns.set_many({f"p{i}": i for i in range(10)})
        ns.delete("p0")
        target = self.make_write()
        if isinstance(target, WriteBack):
            target = WriteThrough()
        stale: list[Any] = []
        stop = threading.Event()

        def reader() -> None:
            for _ in range(100_000):  # bounded; stop ends it sooner
                if stop.is_set():
                    return
                value = ns.get("k")
                if value != "new":
                    stale.append(value)

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        try:
            ns.configure(write=target)
        finally:
            time.sleep(0.01)
            stop.set()
            thread.join(10)
        assert not stale, f"reads during the swap returned {stale[:5]}"
        assert store.mapping["k"] == "new", "a pending write was lost by the swap"
        assert {f"p{i}": i for i in range(1, 10)}.items() <= store.mapping.items()
        assert "p0" not in store.mapping
        assert ns.get("k") == "new"
        ns.set("k", "newer")
        assert ns.get("k") == "newer"
        ns.flush()
        assert store.mapping["k"] == "newer"
        self.check_invariants(ns, store)

    def test_configure_swap_to_write_back_and_back(
        self, ns: Namespace, store: RecordingStore
    ) -> None:
        """This cell's policy -> WriteBack -> this cell's policy: reads follow every write."""
        ns.set("k", 1)
        ns.configure(write=WriteBack(flush_interval=NEVER))
        assert ns.get("k") == 1
        ns.set("k", 2)
        assert ns.get("k") == 2
        ns.configure(write=self.make_write())
        assert store.mapping["k"] == 2
        assert ns.get("k") == 2
        ns.set("k", 3)
        assert ns.get("k") == 3

    def test_configure_invalidation_round_trip_serves_no_stale_copy(
        self, ns: Namespace, store: RecordingStore
    ) -> None:
        """Strategy -> another -> back, writing in between: every read is the last write."""
        original = self.make_invalidation()
        other: Invalidation = Versioned() if not original.versioned else Purge()
        ns.set("k", "v1")
        ns.flush()
        assert ns.get("k") == "v1"  # cached under the original strategy's keys
        ns.configure(invalidation=other)
        assert ns.get("k") == "v1"
        ns.set("k", "v2")
        ns.flush()
        assert ns.get("k") == "v2"
        ns.configure(invalidation=original)
        assert ns.get("k") == "v2", "a copy cached before the first swap was served again"
        ns.configure(invalidation=TTL(30))
        assert ns.get("k") == "v2"
