"""Deprecated alias: the invalidation bus moved to :mod:`tiercache.redis.bus`."""

import warnings

from .redis.bus import STREAM_MAXLEN, Bus, Message

__all__ = ["STREAM_MAXLEN", "Bus", "Message"]

warnings.warn(
    "tiercache.bus is deprecated; import Bus from tiercache.redis", DeprecationWarning, stacklevel=2
)
