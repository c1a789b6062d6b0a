"""Shared aliases and the MISSING sentinel."""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Union

from .errors import ConfigurationError

__all__ = ["MAX_TTL", "MISSING", "TTL", "Clock", "Key", "Missing", "monotonic", "seconds"]


class Missing(enum.Enum):
    """Type of :data:`MISSING`: "no value here", as opposed to a cached ``None``."""

    MISSING = "MISSING"

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "tiercache.MISSING"

    __str__ = __repr__


MISSING = Missing.MISSING
"""Falsy singleton returned for "absent everywhere"; compare with ``is``."""

Key = Union[str, int, bytes, "tuple[Key, ...]"]
"""A cache key: ``str``, ``int``, ``bytes`` or tuples of those."""

TTL = float | int | timedelta
"""A time to live: seconds, or a :class:`datetime.timedelta`."""

Clock = Callable[[], float]
"""A source of monotonic seconds (``time.monotonic`` by default)."""

monotonic: Clock = time.monotonic

MAX_TTL = 100 * 365 * 86_400.0
"""The longest time tiercache accepts (100 years): ``None`` means "no expiry".

Longer ones cannot work: Redis refuses an expiry past about 9.2e15 s
(milliseconds since the epoch must fit 63 bits), and the stored-value
envelope packs the expiry in 64 bits. So they are refused when given, not
when the first write fails.
"""


def seconds(ttl: TTL | None, what: str = "ttl") -> float | None:
    """Normalise a TTL to seconds; ``None`` stays ``None``.

    Raises:
        ConfigurationError: the TTL is negative, zero, longer than :data:`MAX_TTL`,
            infinite, NaN or not a number.
    """
    if ttl is None:
        return None
    if isinstance(ttl, timedelta):
        value = ttl.total_seconds()
    elif isinstance(ttl, (int, float)) and not isinstance(ttl, bool):
        value = float(ttl)
    else:
        raise ConfigurationError(f"{what} must be seconds or a timedelta, not {ttl!r}")
    if not 0 < value < math.inf:  # NaN fails too
        raise ConfigurationError(f"{what} must be a positive, finite time, got {ttl!r}")
    if value > MAX_TTL:
        raise ConfigurationError(
            f"{what} must be at most {MAX_TTL:.0f} s (100 years), got {ttl!r};"
            " pass None for no expiry"
        )
    return value
