"""The Invalidation protocol: how a change reaches cached copies."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["Invalidation"]


@runtime_checkable
class Invalidation(Protocol):
    """How a namespace's changes reach the copies cached elsewhere.

    ``ttl`` is the ceiling the strategy puts on every cached copy (``None``:
    none of its own). ``broadcast`` says whether changes are announced to
    other processes so that they drop their L1 copies; ``versioned`` whether
    cached keys carry the namespace's version.
    """

    @property
    def ttl(self) -> float | None: ...

    @property
    def broadcast(self) -> bool: ...

    @property
    def versioned(self) -> bool: ...
