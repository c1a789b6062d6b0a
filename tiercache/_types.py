"""Shared aliases and the MISSING sentinel."""

from __future__ import annotations

import enum
import time
from datetime import timedelta
from typing import Callable, Union

__all__ = ["MISSING", "Clock", "Key", "Missing", "TTL", "monotonic"]


class Missing(enum.Enum):
    """Type of :data:`MISSING`: "no value here", as opposed to a cached ``None``."""

    MISSING = "MISSING"

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "tiercache.MISSING"


MISSING = Missing.MISSING
"""Falsy singleton returned for "absent everywhere"; compare with ``is``."""

Key = Union[str, int, bytes, "tuple[Key, ...]"]
"""A cache key: ``str``, ``int``, ``bytes`` or tuples of those."""

TTL = Union[float, int, timedelta]
"""A time to live: seconds, or a :class:`datetime.timedelta`."""

Clock = Callable[[], float]
"""A source of monotonic seconds (``time.monotonic`` by default)."""

monotonic: Clock = time.monotonic
