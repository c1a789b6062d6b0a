"""The policy contract's invariant check: a store that records its keys, and what must hold."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._types import MISSING, Key
from ..namespace import Namespace
from ..stores.mapping import MappingStore

__all__ = ["RecordingStore", "check_invariants", "is_write_back", "journal_length"]


class RecordingStore(MappingStore):
    """A MappingStore that remembers every key it was asked about, for the invariant check."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[Key] = set()

    def load_many(self, keys: Sequence[Key]) -> dict[Key, Any]:
        self.seen.update(keys)
        return super().load_many(keys)

    def save_many(self, items: Mapping[Key, Any]) -> None:
        self.seen.update(items)
        super().save_many(items)

    def delete_many(self, keys: Sequence[Key]) -> None:
        self.seen.update(keys)
        super().delete_many(keys)


def is_write_back(ns: Namespace) -> bool:
    """Whether the namespace's policy defers store writes (it reports write-back stats)."""
    return "write_back" in ns.stats()


def journal_length(ns: Namespace, *, write_back: bool) -> int:
    """Entries pending in a journal (Redis hash or local dict); 0 if not ``write_back``."""
    if not write_back:
        return 0
    pending = ns.stats()["write_back"]["pending_local"]
    for tier in ns.tiers:
        client = getattr(tier, "client", None)
        if client is not None and hasattr(tier, "journal_put"):
            pending += int(client.hlen(ns.journal_key))
            break
    return int(pending)


def check_invariants(
    ns: Namespace, store: RecordingStore, *, pending: Callable[[Namespace], int]
) -> None:
    """Assert what holds after each contract test (see ``PolicyContract.check_invariants``).

    ``pending`` counts the entries left in the namespace's write-back journal.
    """
    ns.flush()
    assert pending(ns) == 0, "write-back journal not empty after flush()"
    assert ns.dead_letters() == {}, f"dead letters: {ns.dead_letters()}"
    stats = ns.stats()
    write_back = stats.get("write_back")
    if write_back is not None:
        assert write_back["pending_local"] == 0
        assert write_back["store_errors"] == 0
        assert write_back["dead_lettered"] == 0
    tiers = list(ns.tiers)
    if tiers and hasattr(tiers[0], "maxsize") and hasattr(tiers[0], "__len__"):
        assert len(tiers[0]) <= tiers[0].maxsize  # type: ignore[arg-type]
    layers = list(stats["tiers"].values())
    if stats["store"] is not None:
        layers.append(stats["store"])
    for layer in layers:
        assert layer["requests"] == layer["hits"] + layer["misses"]
        for name in ("hits", "misses", "sets", "deletes", "errors", "undecodable"):
            assert layer[name] >= 0, (name, layer)
        assert layer["errors"] == 0, f"a layer failed during the test: {layer}"
    for upper, lower in itertools.pairwise(layers):
        assert lower["requests"] <= upper["misses"], (
            f"a layer was asked about more keys than the one above it missed: {stats}"
        )
    for key in sorted(store.seen, key=repr):
        expected = store.mapping.get(key, MISSING)
        got = ns.get(key, MISSING)
        assert got == expected, f"{key!r}: cache reads {got!r}, store holds {expected!r}"
