"""Deprecated alias: the invalidation bus moved to :mod:`tiercache.redis.bus`."""

from __future__ import annotations

import warnings
from typing import Any

# No __all__: a module walker that imports this alias (and lists its names) should not warn.
_MOVED = ("STREAM_MAXLEN", "Bus", "Message")


def __getattr__(name: str) -> Any:
    # Warns where an old name is used, not when a module walker merely imports this one.
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"tiercache.bus.{name} is deprecated; import it from tiercache.redis.bus",
        DeprecationWarning,
        stacklevel=2,
    )
    from .redis import bus

    return vars(bus)[name]
