"""TTL: nothing but expiry; staleness elsewhere is bounded by the TTL."""

from __future__ import annotations

from datetime import timedelta

from .._types import seconds
from ..errors import ConfigurationError

__all__ = ["TTL"]


class TTL:
    """Copies expire after ``seconds``; other processes may serve the old value until then.

    The cheapest strategy: a write replaces the writer's own copies and tells
    nobody. ``delete`` and ``invalidate`` still remove the key from every
    tier this process reaches (its L1 and the shared L2).

    Raises:
        ConfigurationError: ``seconds`` is not a positive, finite time.
    """

    broadcast = False
    versioned = False

    def __init__(self, seconds_: float | timedelta) -> None:
        if seconds_ is None:
            raise ConfigurationError("TTL() needs a time: TTL(None) would never expire")
        self.ttl = seconds(seconds_)

    def __repr__(self) -> str:
        return f"TTL({self.ttl})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TTL) and other.ttl == self.ttl

    def __hash__(self) -> int:
        return hash(("TTL", self.ttl))
