"""The TiercacheError tree: every exception tiercache raises on purpose."""

from __future__ import annotations

__all__ = [
    "CapacityError",
    "ConfigurationError",
    "InvalidKeyError",
    "SerializationError",
    "StoreError",
    "TierError",
    "TierUnavailable",
    "TiercacheError",
    "ValueTooLargeError",
]


class TiercacheError(Exception):
    """Base class of every error tiercache raises."""


class ConfigurationError(TiercacheError, ValueError):
    """A constructor or ``configure()`` was given options that cannot work."""


class InvalidKeyError(TiercacheError, TypeError):
    """A key is not ``str``, ``int``, ``bytes`` or a tuple of those."""


class SerializationError(TiercacheError):
    """A value could not be encoded, or bytes could not be decoded."""


class ValueTooLargeError(SerializationError):
    """A serialized value is larger than the namespace's ``max_value_bytes``."""


class TierError(TiercacheError):
    """A cache tier (Redis, ...) failed to answer."""


class TierUnavailable(TierError):
    """A tier is unreachable or timed out; the cache may degrade around it."""


class StoreError(TiercacheError):
    """The backing store failed to load, save or delete."""


class CapacityError(TiercacheError):
    """A bounded buffer (the write-back journal) is full and could not be drained."""
