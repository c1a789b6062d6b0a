"""What the state machines share: namespace, clock steps, values, expiry edges, clean-up."""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from .._types import MISSING
from ..redis import RedisTier
from ..tiers.base import Tier
from .strategies import values

__all__ = [
    "MARKS",
    "NAMESPACE",
    "STEPS",
    "VALUES",
    "ExpiryEdges",
    "same_value",
    "show",
    "unlink_prefix",
]

NAMESPACE = "items"
"""The namespace the machines drive."""

STEPS = st.sampled_from([0.25, 1.0, 2.5, 5.0, 7.5, 10.0, 12.5, 30.0])
"""Clock steps: exact binary fractions, so model and tiers agree on every boundary,
and few, so that their sums keep landing exactly on TTLs of 2.5, 5 or 10 seconds."""

VALUES = values(max_leaves=4)

MARKS = st.booleans()
"""Whether to mark a written value as unique: drawn values are often equal (``None``,
``0``), and a stale copy equal to the fresh value cannot be told apart from it."""


def same_value(a: Any, b: Any) -> bool:
    """True when ``b`` is ``a`` as a round trip must return it: equal, and of the same types.

    Stricter than ``==``: ``1`` is not ``True`` or ``1.0``, a tuple is not a
    list, ``Decimal("1.0")`` is not ``Decimal("1.00")``, ``-0.0`` is not
    ``0.0``, and an aware datetime keeps its offset.
    """
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b)
        return bool(a == b and math.copysign(1.0, a) == math.copysign(1.0, b))
    if isinstance(a, Decimal):
        return bool(a.as_tuple() == b.as_tuple())
    if isinstance(a, dt.datetime):
        return (
            (a.tzinfo is None) == (b.tzinfo is None) and a == b and a.utcoffset() == b.utcoffset()
        )
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        if a.keys() != b.keys():
            return False
        b_keys = {k: k for k in b}  # b's own key objects, to compare their types
        return all(
            type(b_keys[k]) is type(k) and same_value(v, b[k]) for k, v in a.items()
        )
    if isinstance(a, (set, frozenset)):
        return bool(a == b) and Counter(map(type, a)) == Counter(map(type, b))
    return bool(a == b)


class ExpiryEdges:
    """Recent times at which copies were written, to step the clock onto their expiry.

    Boundary bugs (``>=`` for ``>``, a TTL off by one step) show only when a
    read lands exactly on an expiry time, which random steps seldom hit.
    """

    def __init__(self, lifetimes: Iterable[float]) -> None:
        self.lifetimes = sorted({t for t in lifetimes if math.isfinite(t)})
        self.times: list[float] = []

    def note(self, now: float) -> None:
        if self.lifetimes and (not self.times or self.times[-1] != now):
            self.times = [*self.times[-11:], now]

    def ahead(self, now: float) -> list[float]:
        """Expiry times after ``now``, and a quarter second either side of each."""
        return sorted({
            at + life + nudge
            for at in self.times
            for life in self.lifetimes
            for nudge in (-0.25, 0.0, 0.25)
            if at + life + nudge > now
        })


def show(value: Any) -> str:
    return "MISSING" if value is MISSING else f"{value!r:.200}"


def unlink_prefix(tiers: Iterable[Tier], prefix: str) -> None:
    """Remove the machine's keys from every Redis tier (SCAN ``prefix:*``, UNLINK)."""
    seen: set[int] = set()
    for tier in tiers:
        client = getattr(tier, "client", None)
        if not isinstance(tier, RedisTier) or client is None or id(client) in seen:
            continue
        seen.add(id(client))
        batch = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if batch:
            client.unlink(*batch)
