"""Deprecated alias: RedisTier moved to :mod:`tiercache.redis`; import it from there."""

# No DeprecationWarning yet: tiercache's own CLI still imports this path.
from ..redis.tier import DEFAULT_TIMEOUT, RedisTier

__all__ = ["DEFAULT_TIMEOUT", "RedisTier"]
