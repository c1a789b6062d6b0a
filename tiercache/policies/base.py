"""The WritePolicy protocol and what a policy acts on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .._plan import Plan
from .._types import Key

__all__ = ["Target", "WriteBatch", "WritePolicy"]


@dataclass(frozen=True)
class WriteBatch:
    """Validated, serialized items of one ``set``/``set_many``, ready to write.

    ``keys``, ``tier_keys``, ``values`` and ``data`` are parallel: the
    caller's key, its full tier key, the value, and its serialized bytes.
    """

    keys: Sequence[Key]
    tier_keys: Sequence[str]
    values: Sequence[Any]
    data: Sequence[bytes]
    now: float

    def items(self) -> dict[Key, Any]:
        """``{key: value}`` as a store takes it."""
        return dict(zip(self.keys, self.values))


class Target(Protocol):
    """The tiers and store of one namespace, as sub-plans a policy composes.

    Tier failures are handled inside (counted, logged, degraded around);
    store failures propagate, because the store is the system of record.
    """

    has_store: bool

    def save(self, batch: WriteBatch) -> Plan[None]:
        """Write the batch to the store."""
        ...

    def fill(self, batch: WriteBatch) -> Plan[None]:
        """Replace every tier's copy of the batch's keys with the new values."""
        ...

    def drop(self, keys: Sequence[Key], tier_keys: Sequence[str]) -> Plan[None]:
        """Remove the keys from every tier."""
        ...

    def erase(self, keys: Sequence[Key]) -> Plan[None]:
        """Delete the keys from the store."""
        ...


@runtime_checkable
class WritePolicy(Protocol):
    """The order in which a namespace's store and tiers are written."""

    def write(self, batch: WriteBatch, target: Target) -> Plan[None]:
        """Apply ``set_many``."""
        ...

    def delete(self, keys: Sequence[Key], tier_keys: Sequence[str], target: Target) -> Plan[None]:
        """Apply ``delete``: the store and every tier."""
        ...

    def flush(self, target: Target) -> Plan[None]:
        """Write anything the policy holds back; nothing for synchronous policies."""
        ...

    def close(self) -> None:
        """Stop background work the policy started."""
        ...
