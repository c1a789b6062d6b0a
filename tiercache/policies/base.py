"""The WritePolicy protocol and what a policy acts on."""

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

__all__ = ["Target", "WriteBatch", "WritePolicy", "delete_through", "nothing"]


@dataclass
class WriteBatch:
    """Validated, serialized items of one ``set``/``set_many``, ready to write.

    ``keys``, ``tier_keys``, ``values`` and ``data`` are parallel: the
    caller's key, its full tier key, the value, and its serialized bytes.
    ``local_tiers`` (set by the namespace) collects the in-process tiers
    that ``fill`` was asked to fill: the namespace fills them once the
    whole change is done, only for keys no other change touched meanwhile.
    """

    keys: Sequence[Key]
    tier_keys: Sequence[str]
    values: Sequence[Any]
    data: Sequence[bytes]
    now: float
    local_tiers: list[int] | None = None
    #: Set by a policy whose tier write also told the other processes (the
    #: bus entry added in the same script): the namespace then does not.
    announced: bool = False

    def items(self) -> dict[Key, Any]:
        """``{key: value}`` as a store takes it."""
        return dict(zip(self.keys, self.values))


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

    def entries(self, batch: WriteBatch, t: int) -> list[TierEntry]:
        """Tier ``t``'s entries for the batch's values."""
        ...

    def decode_field(self, data: bytes, field: str) -> Any:
        """Deserialize a journal payload stored for the canonical key ``field``."""
        ...

    def save(self, items: dict[Key, Any]) -> Plan[None]:
        """Write items to the store."""
        ...

    def fill(self, batch: WriteBatch, skip: int | None = None, shared: bool = True) -> Plan[None]:
        """Replace the tiers' copies (but tier ``skip``; shared tiers only if ``shared``)."""
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
        through tier ``t``. A policy that has it added sets ``batch.announced``."""
        ...


@runtime_checkable
class WritePolicy(Protocol):
    """The order in which a namespace's store and tiers are written.

    ``Cache.namespace`` gives each namespace its own copy of the policy
    object and calls ``start`` once, so a policy may keep state per namespace.
    """

    def start(self, target: Target, scheduler: Scheduler) -> None:
        """Begin serving ``target`` (schedule background work, if any)."""
        ...

    def write(self, batch: WriteBatch, target: Target) -> Plan[None]:
        """Apply ``set_many``."""
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
        """Stop background work the policy started."""
        ...


def delete_through(keys: Sequence[Key], tier_keys: Sequence[str], target: Target) -> Plan[None]:
    """A synchronous delete: the store first (a failure leaves the tiers as they were), then every tier."""
    if target.store is not None:
        yield from target.erase(keys)
    yield from target.drop(tier_keys)


def nothing() -> Plan[Any]:
    """A plan that performs no I/O and returns nothing (read as empty by callers)."""
    return None
    yield  # makes this a generator
