"""Invalidation strategies: how a change reaches the cached copies."""

from .base import Invalidation
from .purge import Purge
from .ttl import TTL
from .versioned import Versioned

__all__ = ["TTL", "Invalidation", "Purge", "Versioned"]
