"""The WritePolicy protocol, what a policy acts on, and what it hands back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .._engine.ops import Plan
from .._engine.views import TierView
from .._types import Key
from ..scheduler import Scheduler
from ..serialization import Serializer
from ..stores.base import Store
from ..tiers.base import Tier, TierEntry

__all__ = [
    "DeadLetters",
    "PolicyRun",
    "Target",
    "WriteBatch",
    "WriteContext",
    "WriteOutcome",
    "WritePolicy",
    "delete_through",
    "nothing",
]


@dataclass(frozen=True, slots=True)
class WriteContext:
    """Validated, serialized items of one ``set``/``set_many``, ready to write.

    ``keys``, ``tier_keys``, ``values`` and ``data`` are parallel: the
    caller's key, its full tier key, the value, and its serialized bytes;
    ``now`` is the clock reading of the write.
    """

    keys: Sequence[Key]
    tier_keys: Sequence[str]
    values: Sequence[Any]
    data: Sequence[bytes]
    now: float

    def items(self) -> dict[Key, Any]:
        """``{key: value}`` as a store takes it."""
        return dict(zip(self.keys, self.values, strict=True))


WriteBatch = WriteContext
"""The former name of :class:`WriteContext`."""


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    """What a policy's write decided, for the namespace to finish.

    ``fill_local``: replace this process's in-process copies with the new
    values (the namespace does it once the change is complete, and only for
    keys no other change touched meanwhile). ``announced``: the policy's
    tier write also told the other processes (the bus entry added in the
    same script), so the namespace does not announce it again.
    """

    fill_local: bool = False
    announced: bool = False


class Target(Protocol):
    """The tiers and store of one namespace, and sub-plans a policy composes.

    Tier failures are handled inside the sub-plans (counted, logged, read
    around); store failures propagate, because the store is the system of
    record.
    """

    @property
    def name(self) -> str: ...

    @property
    def tiers(self) -> Sequence[Tier]: ...

    @property
    def views(self) -> Sequence[TierView]:
        """The tiers as operations, with their capabilities (parallel to ``tiers``)."""
        ...

    @property
    def store(self) -> Store | None: ...

    @property
    def serializer(self) -> Serializer: ...

    @property
    def key_prefix(self) -> str: ...

    @property
    def journal_key(self) -> str: ...

    def entries(self, ctx: WriteContext, t: int) -> list[TierEntry]:
        """Tier ``t``'s entries for the context's values."""
        ...

    def decode_field(self, data: bytes, field: str) -> Any:
        """Deserialize a journal payload stored for the canonical key ``field``."""
        ...

    def save(self, items: dict[Key, Any]) -> Plan[None]:
        """Write items to the store."""
        ...

    def fill(self, ctx: WriteContext, skip: int | None = None) -> Plan[None]:
        """Replace the shared tiers' copies (but tier ``skip``'s, written already)."""
        ...

    def drop(self, tier_keys: Sequence[str], local: bool = True) -> Plan[None]:
        """Remove the keys from every shared tier, and from in-process ones if ``local``."""
        ...

    def erase(self, keys: Sequence[Key]) -> Plan[None]:
        """Delete the keys from the store."""
        ...

    def announcement(self, t: int, tier_keys: Sequence[str]) -> tuple[str, bytes, int] | None:
        """The bus entry announcing a change of ``tier_keys``, for tier ``t``'s write script
        to add in the same atomic step; ``None`` when nothing is to be announced, or not
        through tier ``t``. A policy that has it added says so in its outcome."""
        ...


@runtime_checkable
class PolicyRun(Protocol):
    """A write policy at work for one namespace (what :meth:`WritePolicy.start` returns).

    Holds whatever state the policy keeps per namespace (a write-back
    journal); a stateless policy is its own run.
    """

    def write(self, ctx: WriteContext, target: Target) -> Plan[WriteOutcome]:
        """Apply ``set_many``; the outcome says what the namespace still does."""
        ...

    def delete(self, keys: Sequence[Key], tier_keys: Sequence[str], target: Target) -> Plan[None]:
        """Apply ``delete``: the store and every tier."""
        ...

    def pending(self, fields: Sequence[str], target: Target) -> Plan[dict[int, Any]]:
        """Values written but not yet in the store, ``{index in fields: value}``."""
        ...

    def flush(self, target: Target, force: bool = False) -> Plan[tuple[bool, int]]:
        """Write to the store what the policy holds back: ``(busy, entries failed)``.

        ``force``: an explicit flush, which retries failed entries now
        instead of after their backoff.
        """
        ...

    def close(self) -> None:
        """Stop background work the run started."""
        ...


@runtime_checkable
class DeadLetters(Protocol):
    """A run that gives up on entries after repeated store failures, and counts."""

    def dead_letters(self, target: Target) -> Plan[dict[Key, Any]]:
        """Entries given up on: ``{key: value}`` (``MISSING`` for a delete)."""
        ...

    def replay_dead_letters(self, target: Target) -> Plan[int]:
        """Queue the dead letters for writing again; how many."""
        ...

    def counters(self) -> dict[str, int]:
        """The run's own counters, for ``stats()``."""
        ...


@runtime_checkable
class WritePolicy(Protocol):
    """The order in which a namespace's store and tiers are written.

    A policy object is frozen configuration, shared by every namespace
    given it; ``start`` returns the run that serves one namespace.
    """

    def start(self, target: Target, scheduler: Scheduler) -> PolicyRun:
        """Begin serving ``target`` (schedule background work, if any)."""
        ...


def delete_through(keys: Sequence[Key], tier_keys: Sequence[str], target: Target) -> Plan[None]:
    """A synchronous delete: the store first (a failure leaves the tiers as they were), then
    every tier."""
    if target.store is not None:
        yield from target.erase(keys)
    yield from target.drop(tier_keys)


def nothing() -> Plan[Any]:
    """A plan that performs no I/O and returns nothing (read as empty by callers)."""
    return None
    yield  # makes this a generator
